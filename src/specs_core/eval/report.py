"""Comparing runs: a markdown table and PNG plots, computed from ``results.jsonl`` files only.

No model is loaded: a report can be made from committed results on any machine.

The table gives, per run: accuracy with its 95% Wilson interval; mean and median latency; the
paired latency ratio against the baseline on the problems both runs finished (total over total,
and the median of the per-problem ratios: below 1 is faster); the paired accuracy difference
against the baseline on the problems both runs attempted, with Agresti-Min's 95% interval and
the exact McNemar p-value; the draft-step share; and the acceptance rate.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specs_core.config import load_yaml_file
from specs_core.errors import InvalidInputError, SpecsError, install_hint
from specs_core.eval.results import ResultsLog, TraceLog, summarize
from specs_core.eval.stats import PairedDifference, auc, paired_difference, quantile
from specs_core.types import PHASES

__all__ = [
    "LatencyRatio",
    "Run",
    "find_run_dirs",
    "latency_ratio",
    "load_run",
    "pareto_front",
    "plot_accuracy_latency",
    "plot_latency_phases",
    "problem_key",
    "render_markdown",
    "write_report",
]

RESULTS = "results.jsonl"
TRACES = "traces.jsonl.gz"


@dataclass(frozen=True)
class Run:
    """One finished (or partial) run, read from its directory.

    Attributes:
        name: the label used in tables and plots.
        path: the run directory.
        rows: the rows of ``results.jsonl``.
        summary: figures recomputed from ``rows``.
    """

    name: str
    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def correct_by_problem(self) -> dict[tuple[str, str], bool]:
        """``(dataset, id) -> correct`` for every row."""
        return {problem_key(r): bool(r.get("correct")) for r in self.rows}

    def latency_by_problem(self) -> dict[tuple[str, str], float]:
        """``(dataset, id) -> total seconds`` for every row that finished without error."""
        return {
            problem_key(r): float(r["latency_s"]["total"])
            for r in self.rows
            if not r.get("error") and "total" in r.get("latency_s", {})
        }


def problem_key(row: dict[str, Any]) -> tuple[str, str]:
    """The key pairing a row with the same problem in another run."""
    return str(row.get("dataset")), str(row["id"])


@dataclass(frozen=True)
class LatencyRatio:
    """A run's latency against the baseline's on the problems both finished without error.

    Attributes:
        total: the run's summed latency over the baseline's (the ratio of means on those
            problems).
        median: the median of the per-problem ratios, which one long problem cannot swing.
        n: the number of shared problems.
    """

    total: float
    median: float
    n: int


def latency_ratio(run: Run, baseline: Run) -> LatencyRatio | None:
    """The paired latency ratio of ``run`` against ``baseline``; ``None`` without a shared
    problem with positive baseline latency."""
    mine, base = run.latency_by_problem(), baseline.latency_by_problem()
    shared = sorted(k for k in set(mine) & set(base) if base[k] > 0)
    if not shared:
        return None
    return LatencyRatio(
        total=sum(mine[k] for k in shared) / sum(base[k] for k in shared),
        median=statistics.median(mine[k] / base[k] for k in shared),
        n=len(shared),
    )


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories among ``paths``: each path itself, or its subdirectories holding runs (a
    sweep's output).

    Raises:
        InvalidInputError: a path holds no run.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if (path / RESULTS).is_file():
            found.append(path)
            continue
        children = (
            sorted(d for d in path.iterdir() if (d / RESULTS).is_file()) if path.is_dir() else []
        )
        if not children:
            raise InvalidInputError(
                f"{path} holds no {RESULTS} (nor do its subdirectories); pass a run directory "
                "written by specs bench or specs sweep"
            )
        found.extend(children)
    return found


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run directory (read-only: a torn last line is skipped, not repaired)."""
    path = Path(path)
    rows = ResultsLog(path / RESULTS).load(repair=False)
    meta: dict[str, Any] = {}
    run_file = path / "run.json"
    if run_file.is_file():
        meta = json.loads(run_file.read_text(encoding="utf-8"))
    meta.setdefault("dataset", rows[0].get("dataset") if rows else None)
    meta.setdefault("policy", rows[0].get("policy") if rows else None)
    meta.pop("created", None)
    size = meta.get("subset_size")
    summary = summarize(rows, **meta, complete=size is None or len(rows) >= int(size))
    return Run(name or path.name, path, rows, summary)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def _paired(run: Run, baseline: Run) -> PairedDifference | None:
    mine, base = run.correct_by_problem(), baseline.correct_by_problem()
    shared = sorted(set(mine) & set(base))
    if not shared:
        return None
    return paired_difference([mine[k] for k in shared], [base[k] for k in shared])


def _paired_text(diff: PairedDifference | None) -> str:
    if diff is None:
        return "no shared problems"
    return (
        f"{100 * diff.difference:+.1f} pp [{100 * diff.low:+.1f}, {100 * diff.high:+.1f}]; "
        f"p={diff.p_value:.2g} (n={diff.n})"
    )


def _n_text(run: Run) -> str:
    s = run.summary
    text = str(s["n"])
    size = s.get("subset_size")
    if size is not None and s["n"] < int(size):
        text = f"{s['n']}/{size} (incomplete)"
    if s["n_errors"]:
        text += f", {s['n_errors']} errors"
    return text


def _ratio_text(ratio: LatencyRatio | None) -> tuple[str, str]:
    if ratio is None:
        return "–", "–"
    return f"{ratio.total:.2f}× (n={ratio.n})", f"{ratio.median:.2f}×"


def _verifier_cells(run: Run) -> list[str]:
    """The verifier columns of one run (see :func:`render_markdown`)."""
    scored = [
        (float(r["final_score"]), bool(r.get("correct")))
        for r in run.rows
        if not r.get("error") and isinstance(r.get("final_score"), int | float)
    ]
    final = auc([x for x, _ in scored], [y for _, y in scored])
    cells = [f"{final:.2f} ({len(scored)})" if final is not None else f"– ({len(scored)})"]
    traces = TraceLog(run.path / TRACES).load()
    if not traces:
        return [*cells, "–", "–"]
    outcome = {str(r["id"]): bool(r.get("correct")) for r in run.rows if not r.get("error")}
    steps: list[tuple[float, bool]] = []
    candidates: list[float] = []
    for problem, trace in traces.items():
        if problem not in outcome:
            continue
        for step in trace.get("steps", []):
            if isinstance(step.get("reward"), int | float):
                steps.append((float(step["reward"]), outcome[problem]))
            candidates += [
                float(c["reward"])
                for c in step.get("candidates", [])
                if isinstance(c.get("reward"), int | float)
            ]
    step_auc = auc([x for x, _ in steps], [y for _, y in steps])
    cells.append(f"{step_auc:.2f} ({len(steps)})" if step_auc is not None else f"– ({len(steps)})")
    if candidates:
        spread = " / ".join(f"{quantile(candidates, q):.2f}" for q in (0.1, 0.5, 0.9))
        cells.append(f"{spread} ({len(candidates)})")
    else:
        cells.append("–")
    return cells


def render_markdown(runs: Sequence[Run], baseline: Run) -> str:
    """The comparison tables of ``runs`` against ``baseline`` as markdown."""
    lines = [
        "# Benchmark report",
        "",
        f"Baseline: `{baseline.name}` ({baseline.path}).",
        "",
        "| run | policy | dataset | n | accuracy (95% CI) | mean latency (s) "
        "| median latency (s) | latency ratio | median per-problem ratio "
        "| Δ accuracy vs baseline (95% CI; p) | draft-step share | acceptance rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = run.summary
        ci = s["accuracy_ci95"]
        acc = "–" if ci is None else f"{_pct(s['accuracy'])} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
        ratio, median_ratio = _ratio_text(latency_ratio(run, baseline))
        paired = "baseline" if run is baseline else _paired_text(_paired(run, baseline))
        lines.append(
            f"| {run.name} | {s.get('policy') or '–'} | {s.get('dataset') or '–'} | "
            f"{_n_text(run)} | {acc} | {_secs(s['latency_s']['mean'])} | "
            f"{_secs(s['latency_s']['median'])} | {ratio} | {median_ratio} | {paired} | "
            f"{_pct(s['draft_step_share'])} | {_pct(s['acceptance_rate'])} |"
        )
    lines += [
        "",
        "Latency ratio: the run's total latency over the baseline's on the problems both "
        "finished (n of them), the ratio of means on those problems; median per-problem ratio: "
        "the median of the run's latency over the baseline's, problem by problem, which one "
        "long problem cannot swing. Below 1 is faster. Δ accuracy: paired difference in "
        "percentage points on the problems both runs attempted, with Agresti-Min's 95% interval "
        "and the exact McNemar p-value. Draft-step share: committed steps written by the draft; "
        "acceptance rate: accepted over proposed draft steps. Problems that raised count as "
        "wrong and are left out of latency figures.",
        "",
        "## Mean latency per phase (s)",
        "",
        "Phases can overlap (the target and the reward model score concurrently); overhead is "
        "the time covered by no phase.",
        "",
        "| run | " + " | ".join(PHASES) + " | total |",
        "|---|" + "---|" * (len(PHASES) + 1),
    ]
    for run in runs:
        phases = run.summary["latency_by_phase_s"]
        cells = " | ".join(_secs(phases.get(p)) for p in PHASES)
        lines.append(f"| {run.name} | {cells} | {_secs(run.summary['latency_s']['mean'])} |")
    lines += [
        "",
        "## Verifier",
        "",
        "How well the run's final score tells right from wrong (AUC over problems), the same for "
        "the rewards of the committed steps, each labelled with its problem's outcome, and the "
        "spread of every candidate's reward (from `traces.jsonl.gz`; `–` for runs without "
        "traces). `specs rewards eval` measures any reward model in depth.",
        "",
        "| run | final-score AUC (n) | committed-step AUC (steps) "
        "| candidate rewards p10 / median / p90 (candidates) |",
        "|---|---|---|---|",
    ]
    for run in runs:
        lines.append(f"| {run.name} | " + " | ".join(_verifier_cells(run)) + " |")
    lines += [
        "",
        "## Tokens per problem",
        "",
        "| run | model | prompt | generated | cached |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        for model, t in sorted(run.summary["tokens_per_problem"].items()):
            lines.append(
                f"| {run.name} | {model} | {t['prompt']:.0f} | {t['generated']:.0f} | "
                f"{t['cached']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower x (latency) and higher y
    (accuracy), sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise SpecsError(f"plots need matplotlib: {install_hint('eval')}") from e
    return Figure(figsize=(width, height), dpi=120, layout="constrained")


_MARKERS = "osD^vP*Xhp<>"


def _policy_styles(runs: Sequence[Run]) -> dict[str, tuple[str, str]]:
    """A colour and a marker per policy, in the order the policies first appear."""
    policies = list(dict.fromkeys(str(r.summary.get("policy")) for r in runs))
    return {
        policy: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, policy in enumerate(policies)
    }


def _label(run: Run) -> str:
    """A run's name, with its policy when the name alone does not say it (``tau_acc=5``)."""
    policy = str(run.summary.get("policy"))
    return run.name if policy in run.name else f"{policy} · {run.name}"


def _policy_n(run: Run) -> object:
    try:
        config = load_yaml_file(run.path / "config.yaml") or {}
    except SpecsError:
        return None
    policy = config.get("policy") if isinstance(config, dict) else None
    return policy.get("n") if isinstance(policy, dict) else None


def _plot_title(what: str, runs: Sequence[Run]) -> str:
    """``what``, the datasets, the problem counts and ``n`` when the runs share them."""
    if not runs:
        return what
    datasets = sorted({str(r.summary.get("dataset")) for r in runs})
    counts = sorted({int(r.summary["n"]) for r in runs})
    ns = {_policy_n(r) for r in runs} - {None}
    parts = [", ".join(datasets)]
    parts.append(
        f"{counts[0]} problems" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} problems"
    )
    if len(ns) == 1:
        parts.append(f"n = {ns.pop()}")
    return f"{what}: " + ", ".join(parts)


def plot_accuracy_latency(runs: Sequence[Run], path: Path) -> Path:
    """Accuracy against mean latency, one point per run (colour and marker by policy, a legend
    instead of labels on the points), 95% intervals, the Pareto frontier dashed."""
    timed = [r for r in runs if r.summary["latency_s"]["mean"] is not None and r.summary["n"]]
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    styles = _policy_styles(timed)
    points = [(r.summary["latency_s"]["mean"], r.summary["accuracy"]) for r in timed]
    front = set(pareto_front(points))
    for i, (run, (x, y)) in enumerate(zip(timed, points, strict=True)):
        lo, hi = run.summary["accuracy_ci95"]
        colour, marker = styles[str(run.summary.get("policy"))]
        ax.errorbar(
            x,
            100 * y,
            yerr=[[100 * max(0.0, y - lo)], [100 * max(0.0, hi - y)]],
            fmt=marker,
            color=colour,
            markersize=8,
            markeredgecolor="black" if i in front else colour,
            capsize=3,
            alpha=0.9,
            label=_label(run) + (" (frontier)" if i in front else ""),
        )
    if len(front) > 1:
        ordered = sorted(front, key=lambda i: points[i])
        ax.step(
            [points[i][0] for i in ordered],
            [100 * points[i][1] for i in ordered],
            where="post",
            color="grey",
            linestyle="--",
            linewidth=1.0,
        )
    if timed:
        ax.set_xlim(0, 1.1 * max(x for x, _ in points))
    ax.set_ylim(0, 100)
    ax.set_xlabel("mean latency per problem (s)")
    ax.set_ylabel("accuracy (%), 95% Wilson interval")
    ax.set_title(_plot_title("Accuracy vs latency", timed))
    ax.grid(True, alpha=0.3)
    if timed:
        fig.legend(loc="outside right upper", fontsize=8, title="run", title_fontsize=8)
    fig.savefig(path)
    return path


def plot_latency_phases(runs: Sequence[Run], path: Path) -> Path:
    """Mean latency per phase, one stacked bar per run (a mark shows the mean total)."""
    fig = _figure(8.0, 2.0 + 0.45 * max(len(runs), 1))
    ax = fig.add_subplot()
    names = [_label(r) for r in runs]
    left = [0.0] * len(runs)
    for phase in PHASES:
        widths = [r.summary["latency_by_phase_s"].get(phase) or 0.0 for r in runs]
        if any(widths):
            ax.barh(names, widths, left=left, label=phase)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    totals = [r.summary["latency_s"]["mean"] or 0.0 for r in runs]
    ax.plot(totals, names, "k|", markersize=14, markeredgewidth=2, label="total (wall)")
    ax.set_xlim(0, 1.08 * max([*left, *totals, 1e-9]))
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per problem (phases can overlap)")
    ax.set_title(_plot_title("Latency by phase", runs))
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=4, fontsize=7)
    fig.savefig(path)
    return path


def write_report(
    paths: Sequence[str | Path],
    *,
    baseline: str | Path | None = None,
    out: str | Path | None = None,
    plots: str | Path | None = None,
) -> str:
    """Compare run directories; write the markdown and, with ``plots``, two PNG files.

    Args:
        paths: run directories, or directories of runs (a sweep).
        baseline: the baseline run's directory (default: the first run).
        out: where to write the markdown (also returned).
        plots: a directory for ``accuracy_vs_latency.png`` and ``latency_by_phase.png``.

    Raises:
        InvalidInputError: a path holds no run, or the baseline is not among the runs.
    """
    dirs = find_run_dirs(paths)
    if baseline is not None and Path(baseline).resolve() not in {d.resolve() for d in dirs}:
        dirs = [*find_run_dirs([baseline]), *dirs]
    runs = [load_run(d, name) for d, name in zip(dirs, _unique_names(dirs), strict=True)]
    base = runs[0]
    if baseline is not None:
        wanted = Path(baseline).resolve()
        base = next(r for r in runs if r.path.resolve() == wanted)
    text = render_markdown(runs, base)
    if plots is not None:
        plot_dir = Path(plots)
        plot_dir.mkdir(parents=True, exist_ok=True)
        acc = plot_accuracy_latency(runs, plot_dir / "accuracy_vs_latency.png")
        phases = plot_latency_phases(runs, plot_dir / "latency_by_phase.png")
        where = Path(out).parent if out is not None else Path.cwd()
        links = [os.path.relpath(p.resolve(), where.resolve()) for p in (acc, phases)]
        text += f"\n![accuracy vs latency]({links[0]})\n\n![latency by phase]({links[1]})\n"
    if out is not None:
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
    return text
