"""How good is a reward model? Score labelled solutions and measure it (``specs rewards eval``).

A verifier drives a search by the order it puts candidates in, so this module measures order:

- **solution AUC**: the chance that a correct solution scores above a wrong one, over all
  solutions, with a bootstrap interval that resamples problems. Across problems it also rewards
  recognising hard problems;
- **within-problem AUC**: the same chance between a correct and a wrong solution *of the same
  problem*, averaged over the problems that have both; this is what decides a search;
- **step AUC**: every step labelled with its solution's outcome (outcome propagation), or with a
  Monte-Carlo estimate when the input carries one (``step_labels``: positive when above 0);
- **selection**: on problems with several solutions, the accuracy of picking the best-scored one,
  against majority vote, the first solution, and the oracle (any correct);
- **calibration**: fraction correct per score bin, and the expected calibration error;
- **cost**: seconds and evaluated tokens per scored step.

Solutions come from ``specs bench`` run directories (each row's solution, and the other sampled
solutions a best-of-N row keeps) or from JSONL files of ``{question, steps | solution,
correct | gold}``. Scores are cached per model and solution in the output directory, so an
interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specs_core.errors import InvalidInputError
from specs_core.eval.datasets import AnswerFormat, read_records
from specs_core.eval.results import ResultsLog
from specs_core.eval.stats import auc
from specs_core.protocols import RewardModel, TokenUsageReporter
from specs_core.rewards import Aggregation, aggregate
from specs_core.text import DEFAULT_STEP_DELIMITER, extract_answer, split_steps, step_content

__all__ = [
    "LabelledSolution",
    "ScoreCache",
    "VerifierReport",
    "evaluate",
    "first_problems",
    "fit_platt",
    "load_solutions",
    "score_solutions",
]

log = logging.getLogger(__name__)

RECORDED = "recorded"
"""The name under which the scores a run recorded (its ``final_score``) are evaluated."""


@dataclass(frozen=True)
class LabelledSolution:
    """A solution whose correctness is known.

    Attributes:
        problem: the key grouping the solutions of one problem (``dataset:id`` or the question).
        question: the problem text.
        steps: the solution's steps as generated (delimiters included).
        correct: its final answer is right.
        answer: the answer it states.
        origin: where it was read (a run directory or a file).
        recorded: the score the run that produced it recorded (``final_score``), if any.
        step_labels: per-step Monte-Carlo estimates of success, when the input has them.
    """

    problem: str
    question: str
    steps: tuple[str, ...]
    correct: bool
    answer: str | None
    origin: str
    recorded: float | None = None
    step_labels: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        """A stable identity of the (question, steps) pair, used to cache scores."""
        text = json.dumps([self.question, list(self.steps)], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# -- reading solutions --------------------------------------------------------------------------


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _from_run(path: Path, delimiter: str) -> list[LabelledSolution]:
    rows = ResultsLog(path / "results.jsonl").load(repair=False)
    out = []
    for row in rows:
        if row.get("error") or not row.get("text"):
            continue
        problem = f"{row.get('dataset')}:{row['id']}"
        steps = row.get("solution_steps") or split_steps(row["text"], delimiter)
        out.append(
            LabelledSolution(
                problem=problem,
                question=row["question"],
                steps=tuple(steps),
                correct=bool(row.get("correct")),
                answer=row.get("extracted", row.get("answer")),
                origin=path.name,
                recorded=_float_or_none(row.get("final_score")),
            )
        )
        for other in (row.get("extra") or {}).get("solutions", []):
            if not isinstance(other, dict) or "text" not in other or "correct" not in other:
                continue  # rows of earlier versions keep no text or grade for them
            steps = split_steps(other["text"], delimiter)
            if steps and list(steps) != list(out[-1].steps):
                out.append(
                    LabelledSolution(
                        problem=problem,
                        question=row["question"],
                        steps=tuple(steps),
                        correct=bool(other["correct"]),
                        answer=other.get("answer"),
                        origin=path.name,
                        recorded=_float_or_none(other.get("score")),
                    )
                )
    return out


def _from_file(path: Path, delimiter: str) -> list[LabelledSolution]:
    out = []
    for number, rec in enumerate(read_records(path), start=1):
        where = f"{path}:{number}"
        question = rec.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError(f"{where}: needs a non-empty 'question' string")
        steps = rec.get("steps")
        if steps is None:
            solution = rec.get("solution")
            if not isinstance(solution, str):
                raise InvalidInputError(f"{where}: needs 'steps' (a list) or 'solution' (text)")
            steps = split_steps(solution, delimiter)
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            raise InvalidInputError(f"{where}: 'steps' must be a non-empty list of strings")
        text = "".join(steps)
        if "correct" in rec:
            correct = rec["correct"]
            if not isinstance(correct, bool):
                raise InvalidInputError(f"{where}: 'correct' must be true or false")
        elif "gold" in rec:
            from specs_core.eval.grading import grade

            fmt = rec.get("answer_format", AnswerFormat.MATH)
            try:
                correct = grade(text, str(rec["gold"]), fmt).correct
            except ValueError as e:
                raise InvalidInputError(f"{where}: unknown answer_format {fmt!r}") from e
        else:
            raise InvalidInputError(f"{where}: needs 'correct' (true/false) or 'gold' (answer)")
        labels = rec.get("step_labels")
        if labels is not None and (
            not isinstance(labels, list)
            or len(labels) != len(steps)
            or any(_float_or_none(x) is None for x in labels)
        ):
            raise InvalidInputError(f"{where}: 'step_labels' must hold one number per step")
        out.append(
            LabelledSolution(
                problem=str(rec.get("id", question)),
                question=question,
                steps=tuple(steps),
                correct=correct,
                answer=extract_answer(text),
                origin=path.name,
                recorded=_float_or_none(rec.get("score")),
                step_labels=tuple(float(x) for x in labels) if labels is not None else None,
            )
        )
    return out


def load_solutions(
    sources: Sequence[str | Path], *, delimiter: str = DEFAULT_STEP_DELIMITER
) -> list[LabelledSolution]:
    """Labelled solutions from run directories and JSONL files, each distinct solution of a
    problem once (the first source that has it wins).

    Raises:
        InvalidInputError: a source is missing or malformed.
    """
    seen: set[tuple[str, str]] = set()
    out: list[LabelledSolution] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            if not (path / "results.jsonl").exists():
                raise InvalidInputError(f"{path} holds no results.jsonl (not a specs bench run)")
            found = _from_run(path, delimiter)
        elif path.is_file():
            found = _from_file(path, delimiter)
        else:
            raise InvalidInputError(f"{path} does not exist")
        for s in found:
            if (s.problem, s.key) not in seen:
                seen.add((s.problem, s.key))
                out.append(s)
    return out


def group_by_problem(solutions: Iterable[LabelledSolution]) -> dict[str, list[LabelledSolution]]:
    """The solutions of each problem, in input order."""
    groups: dict[str, list[LabelledSolution]] = {}
    for s in solutions:
        groups.setdefault(s.problem, []).append(s)
    return groups


def first_problems(
    solutions: Sequence[LabelledSolution], limit: int | None
) -> list[LabelledSolution]:
    """The solutions of the first ``limit`` problems, in input order (all with ``None``)."""
    if limit is None:
        return list(solutions)
    keep = set(list(group_by_problem(solutions))[:limit])
    return [s for s in solutions if s.problem in keep]


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One model's rewards for one solution, and what they cost."""

    rewards: tuple[float, ...]
    seconds: float
    tokens: int


class ScoreCache:
    """Scores already computed, one JSON line per (model, solution); appended as they come.

    Args:
        path: the JSONL file (``None``: keep nothing).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._log = ResultsLog(path, rows_of_a_run=False) if path is not None else None
        self.entries: dict[tuple[str, str], Scored] = {}
        if self._log is not None:
            for row in self._log.load():
                try:
                    self.entries[(row["model"], row["key"])] = Scored(
                        tuple(float(r) for r in row["rewards"]),
                        float(row["seconds"]),
                        int(row["tokens"]),
                    )
                except (KeyError, TypeError, ValueError) as e:
                    raise InvalidInputError(
                        f"{path} holds a malformed line ({e}); delete the file to score again"
                    ) from e

    def get(self, model: str, key: str) -> Scored | None:
        """The cached score, if any."""
        return self.entries.get((model, key))

    def put(self, model: str, key: str, scored: Scored) -> None:
        """Remember (and append) a score."""
        self.entries[(model, key)] = scored
        if self._log is not None:
            self._log.append(
                {
                    "model": model,
                    "key": key,
                    "rewards": list(scored.rewards),
                    "seconds": scored.seconds,
                    "tokens": scored.tokens,
                }
            )


def _check_rewards(name: str, rows: object, lengths: Sequence[int]) -> list[list[float]]:
    if not isinstance(rows, list) or len(rows) != len(lengths):
        raise InvalidInputError(f"reward model {name} returned the wrong number of solutions")
    out = []
    for row, n in zip(rows, lengths, strict=True):
        values = [float(x) for x in row]
        if len(values) != n or not all(math.isfinite(v) for v in values):
            raise InvalidInputError(
                f"reward model {name} must return {n} finite rewards for a {n}-step solution"
            )
        out.append(values)
    return out


def score_solutions(
    solutions: Sequence[LabelledSolution],
    models: Mapping[str, RewardModel],
    cache: ScoreCache,
    *,
    delimiter: str = DEFAULT_STEP_DELIMITER,
    on_problem: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Scored]]:
    """Every step of every solution scored by every model, problem by problem.

    The models take turns on each problem, so an interrupted evaluation leaves every model
    scored on the same problems. A problem's solutions go to a model in one call; its time and
    tokens are shared among the solutions in proportion to their steps.

    Returns:
        ``{model label: {solution key: Scored}}``.
    """
    out: dict[str, dict[str, Scored]] = {label: {} for label in models}
    groups = list(group_by_problem(solutions).values())
    for done, group in enumerate(groups, start=1):
        for label, model in models.items():
            todo = [s for s in group if cache.get(label, s.key) is None]
            if todo:
                contents = [[step_content(x, delimiter) for x in s.steps] for s in todo]
                start = time.perf_counter()
                rows = model.score(todo[0].question, contents)
                seconds = time.perf_counter() - start
                tokens = 0
                if isinstance(model, TokenUsageReporter):
                    usage = model.take_token_usage()
                    tokens = int(usage.get("prompt", 0)) - int(usage.get("cached", 0))
                rewards = _check_rewards(label, rows, [len(c) for c in contents])
                total_steps = sum(len(c) for c in contents)
                for s, r in zip(todo, rewards, strict=True):
                    share = len(r) / total_steps
                    cache.put(
                        label, s.key, Scored(tuple(r), seconds * share, round(tokens * share))
                    )
            for s in group:
                cached = cache.get(label, s.key)
                assert cached is not None
                out[label][s.key] = cached
        if on_problem is not None:
            on_problem(done, len(groups))
    return out


# -- statistics ---------------------------------------------------------------------------------


def _bootstrap(
    groups: Sequence[Sequence[tuple[float, bool]]], resamples: int, seed: int
) -> tuple[float, float] | None:
    """The 95% percentile interval of the AUC when problems are resampled."""
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        picked = [groups[rng.randrange(len(groups))] for _ in groups]
        flat = [x for g in picked for x in g]
        a = auc([x[0] for x in flat], [x[1] for x in flat])
        if a is not None:
            values.append(a)
    if len(values) < resamples // 2:
        return None
    values.sort()
    return values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]


def _majority(group: Sequence[LabelledSolution]) -> bool:
    counts: dict[str, int] = {}
    for s in group:
        if s.answer is not None:
            counts[s.answer] = counts.get(s.answer, 0) + 1
    if not counts:
        return group[0].correct
    best = max(counts.values())
    winner = next(a for a in counts if counts[a] == best)  # ties: the first seen
    return next(s.correct for s in group if s.answer == winner)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def fit_platt(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """Logistic calibration ``P(correct) = sigmoid(a * logit(score) + b)``, fitted by Newton's
    method with a weak ridge (a unit Gaussian prior on ``a`` and ``b``) that keeps the fit finite
    when scores separate the classes.

    Raises:
        InvalidInputError: fewer than two solutions of each class.
    """
    pos = sum(1 for y in labels if y)
    if pos < 2 or len(labels) - pos < 2:
        raise InvalidInputError("calibration needs at least two correct and two wrong solutions")
    xs = [_logit(s) for s in scores]
    ys = [1.0 if y else 0.0 for y in labels]
    a, b = 1.0, 0.0
    for _ in range(100):
        ga, gb, haa, hab, hbb = a, b, 1.0, 0.0, 1.0  # the prior's gradient and curvature
        for x, y in zip(xs, ys, strict=True):
            p = _sigmoid(a * x + b)
            w = p * (1 - p)
            ga, gb = ga + (p - y) * x, gb + (p - y)
            haa, hab, hbb = haa + w * x * x, hab + w * x, hbb + w
        det = haa * hbb - hab * hab
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a, b


@dataclass
class VerifierReport:
    """The figures of one reward model on one set of labelled solutions."""

    name: str
    solutions: int
    problems: int
    correct: int
    solution_auc: float | None
    solution_auc_ci: tuple[float, float] | None
    within_auc: float | None
    within_problems: int
    step_auc: float | None
    steps: int
    mc_step_auc: float | None
    selection: dict[str, float | None]
    selection_problems: int
    calibration: list[tuple[float, float, int]]
    ece: float | None
    seconds_per_step: float | None
    tokens_per_step: float | None
    scores: list[tuple[float, bool]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (the scores themselves left out)."""
        return {
            "name": self.name,
            "solutions": self.solutions,
            "problems": self.problems,
            "correct": self.correct,
            "solution_auc": self.solution_auc,
            "solution_auc_ci95": list(self.solution_auc_ci) if self.solution_auc_ci else None,
            "within_problem_auc": self.within_auc,
            "within_problems": self.within_problems,
            "step_auc": self.step_auc,
            "steps": self.steps,
            "mc_step_auc": self.mc_step_auc,
            "selection": self.selection,
            "selection_problems": self.selection_problems,
            "calibration": [list(c) for c in self.calibration],
            "ece": self.ece,
            "seconds_per_step": self.seconds_per_step,
            "tokens_per_step": self.tokens_per_step,
        }


def evaluate(
    name: str,
    solutions: Sequence[LabelledSolution],
    step_rewards: Mapping[str, Sequence[float]] | None,
    *,
    aggregation: Aggregation | str = Aggregation.LAST,
    costs: Mapping[str, Scored] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    bins: int = 10,
) -> VerifierReport:
    """The figures of one verifier.

    Args:
        name: its label.
        solutions: the labelled solutions.
        step_rewards: per-step rewards by solution key; ``None`` evaluates the scores the runs
            recorded (a solution without one is left out).
        aggregation: how per-step rewards make a solution's score.
        costs: what scoring each solution cost, by key.
        resamples: bootstrap resamples of the solution AUC interval.
        seed: the bootstrap's seed.
        bins: calibration bins over [0, 1].
    """
    scored: list[tuple[LabelledSolution, float, Sequence[float] | None]] = []
    for s in solutions:
        if step_rewards is None:
            if s.recorded is not None:
                scored.append((s, s.recorded, None))
        else:
            row = step_rewards[s.key]
            scored.append((s, aggregate(row, aggregation), row))
    groups: dict[str, list[tuple[LabelledSolution, float, Sequence[float] | None]]] = {}
    for item in scored:
        groups.setdefault(item[0].problem, []).append(item)
    pairs = [(score, s.correct) for s, score, _ in scored]
    solution_auc = auc([p[0] for p in pairs], [p[1] for p in pairs])
    interval = None
    if solution_auc is not None and resamples > 0:
        interval = _bootstrap(
            [[(score, s.correct) for s, score, _ in g] for g in groups.values()], resamples, seed
        )
    within = [
        a
        for g in groups.values()
        if (a := auc([score for _, score, _ in g], [s.correct for s, _, _ in g])) is not None
    ]
    step_scores, step_labels, mc_scores, mc_labels = [], [], [], []
    for s, _, rewards in scored:
        if rewards is None:
            continue
        step_scores += list(rewards)
        step_labels += [s.correct] * len(rewards)
        if s.step_labels is not None:
            mc_scores += list(rewards)
            mc_labels += [x > 0 for x in s.step_labels]
    several = [g for g in groups.values() if len(g) > 1]
    selection: dict[str, float | None] = {"verifier": None, "majority": None, "first": None}
    selection["oracle"] = None
    if several:
        k = len(several)
        best = [max(g, key=lambda item: item[1])[0].correct for g in several]
        selection = {
            "verifier": sum(best) / k,
            "majority": sum(_majority([item[0] for item in g]) for g in several) / k,
            "first": sum(g[0][0].correct for g in several) / k,
            "oracle": sum(any(item[0].correct for item in g) for g in several) / k,
        }
    calibration = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(sc, y) for sc, y in pairs if lo <= sc < hi or (b == bins - 1 and sc == 1.0)]
        if members:
            mean = sum(m[0] for m in members) / len(members)
            calibration.append((mean, sum(m[1] for m in members) / len(members), len(members)))
    in_unit = all(0.0 <= sc <= 1.0 for sc, _ in pairs)
    ece = (
        sum(n * abs(mean - frac) for mean, frac, n in calibration) / len(pairs)
        if pairs and in_unit
        else None
    )
    seconds = tokens = None
    if costs:
        steps = sum(len(s.steps) for s, _, _ in scored)
        if steps:
            seconds = sum(costs[s.key].seconds for s, _, _ in scored) / steps
            tokens = sum(costs[s.key].tokens for s, _, _ in scored) / steps
    return VerifierReport(
        name=name,
        solutions=len(scored),
        problems=len(groups),
        correct=sum(1 for s, _, _ in scored if s.correct),
        solution_auc=solution_auc,
        solution_auc_ci=interval,
        within_auc=sum(within) / len(within) if within else None,
        within_problems=len(within),
        step_auc=auc(step_scores, step_labels),
        steps=len(step_scores),
        mc_step_auc=auc(mc_scores, mc_labels),
        selection=selection,
        selection_problems=len(several),
        calibration=calibration,
        ece=ece,
        seconds_per_step=seconds,
        tokens_per_step=tokens,
        scores=pairs,
    )


# -- output -------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def render_markdown(reports: Sequence[VerifierReport]) -> str:
    """The verifier table (and the selection table when problems have several solutions)."""
    if not reports:
        return "no reward model to evaluate\n"
    first = reports[0]
    lines = [
        f"{first.solutions} solutions of {first.problems} problems "
        f"({first.correct} correct); within-problem figures on problems with both kinds.",
        "",
        "| verifier | solution AUC (95% CI) | within-problem AUC (problems) | step AUC (steps) "
        "| ECE | s / step | tokens / step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        ci = (
            f" ({_num(r.solution_auc_ci[0])}-{_num(r.solution_auc_ci[1])})"
            if (r.solution_auc_ci)
            else ""
        )
        step = f"{_num(r.step_auc)} ({r.steps})" if r.steps else "–"
        if r.mc_step_auc is not None:
            step += f", MC labels {_num(r.mc_step_auc)}"
        lines.append(
            f"| {r.name} | {_num(r.solution_auc)}{ci} | {_num(r.within_auc)} "
            f"({r.within_problems}) | {step} | {_num(r.ece)} | {_num(r.seconds_per_step)} "
            f"| {_num(r.tokens_per_step, 0)} |"
        )
    several = [r for r in reports if r.selection_problems]
    if several:
        lines += [
            "",
            f"Selection on the {several[0].selection_problems} problems with several solutions:",
            "",
            "| verifier | picks its best | majority vote | first solution | oracle |",
            "|---|---|---|---|---|",
        ]
        for r in several:
            s = r.selection
            lines.append(
                f"| {r.name} | {_pct(s['verifier'])} | {_pct(s['majority'])} "
                f"| {_pct(s['first'])} | {_pct(s['oracle'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_reliability(reports: Sequence[VerifierReport], path: Path) -> Path:
    """Fraction correct against mean score per bin, one line per verifier."""
    from specs_core.eval.report import _figure

    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for r in reports:
        if r.calibration and r.ece is not None:
            xs = [c[0] for c in r.calibration]
            ys = [c[1] for c in r.calibration]
            ax.plot(xs, ys, marker="o", label=f"{r.name} (ECE {r.ece:.2f})")
    ax.set_xlabel("score (bin mean)")
    ax.set_ylabel("fraction correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    fig.savefig(path)
    return path


def plot_histograms(reports: Sequence[VerifierReport], path: Path) -> Path:
    """Score histograms of correct and wrong solutions, one panel per verifier."""
    from specs_core.eval.report import _figure

    fig = _figure(4.0 * max(1, len(reports)), 3.4)
    axes = fig.subplots(1, max(1, len(reports)), squeeze=False)[0]
    for ax, r in zip(axes, reports, strict=False):
        right = [sc for sc, y in r.scores if y]
        wrong = [sc for sc, y in r.scores if not y]
        lo = min((sc for sc, _ in r.scores), default=0.0)
        hi = max((sc for sc, _ in r.scores), default=1.0)
        edges = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 20
        ax.hist(right, bins=edges, alpha=0.6, label=f"correct ({len(right)})", color="tab:green")
        ax.hist(wrong, bins=edges, alpha=0.6, label=f"wrong ({len(wrong)})", color="tab:red")
        ax.set_title(f"{r.name}: AUC {_num(r.solution_auc)}", fontsize="medium")
        ax.set_xlabel("solution score")
        ax.legend(fontsize="small")
    fig.savefig(path)
    return path
