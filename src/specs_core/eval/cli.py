"""The ``specs bench``, ``specs sweep`` and ``specs report`` commands.

Mounted on the main ``specs`` command by :func:`add_commands`. Errors are raised as
:class:`~specs_core.errors.SpecsError` subclasses; the main command shows them as one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from specs_core.errors import InvalidInputError
from specs_core.eval.datasets import (
    BUILTIN_DATASETS,
    FILE_DATASETS,
    Problem,
    load_dataset,
    select_subset,
)
from specs_core.search import Budget
from specs_core.text import step_content

__all__ = ["add_commands"]

log = logging.getLogger(__name__)

_DATASETS = ", ".join([*BUILTIN_DATASETS, *FILE_DATASETS])

DatasetOption = Annotated[
    str,
    typer.Option(
        "--dataset", "-d", help=f"A set ({_DATASETS}) or the path of a .jsonl/.json file."
    ),
]
PolicyOption = Annotated[
    str | None, typer.Option("--policy", "-p", help="A registered policy (default: the config's).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: SPECS on the embedded models)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable)."),
]
LimitOption = Annotated[
    int | None, typer.Option("--limit", "-n", help="Solve a seeded sample of N problems.")
]
SeedOption = Annotated[
    int, typer.Option("--sample-seed", help="Seed of the --limit sample (stable across runs).")
]
DataFileOption = Annotated[
    Path | None,
    typer.Option("--data-file", help="The file of olympiadbench/aime, or a replacement file."),
]
FieldOption = Annotated[
    list[str] | None,
    typer.Option(
        "--field", help="For a .jsonl dataset: question=COL, answer=COL, id=COL (repeatable)."
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option("--answer-format", help="For a .jsonl dataset: math, gsm8k or numeric."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Delete a previous run in --out and start over.")
]
RetryOption = Annotated[
    bool, typer.Option("--retry-errors", help="When resuming, solve again problems that raised.")
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
]
MaxProblemsOption = Annotated[
    int | None,
    typer.Option(
        "--max-problems",
        min=1,
        help="Solve at most N of the remaining problems, then stop (run again to go on).",
    ),
]
UntilOption = Annotated[
    int | None,
    typer.Option(
        "--until",
        min=1,
        help="Stop once the run holds N problems, counting those solved before.",
    ),
]
ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency",
        "-j",
        min=1,
        help="Problems solved at once (for servers; the same results as one at a time where "
        "the engine is deterministic; llama.cpp runs one search at a time anyway).",
    ),
]
ProblemTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--problem-timeout",
        min=0.001,
        help="Stop a problem's search after this many seconds (checked before each model call); "
        "it keeps the steps so far, and its row says time_limit.",
    ),
]
ProblemTokensOption = Annotated[
    int | None,
    typer.Option(
        "--problem-max-tokens",
        min=1,
        help="Stop a problem's search once its models generated this many tokens in all; its "
        "row says token_limit.",
    ),
]


def _budget(seconds: float | None, tokens: int | None) -> Budget | None:
    return None if seconds is None and tokens is None else Budget(seconds, tokens)


FirstProblemsOption = Annotated[
    int | None,
    typer.Option("--limit", "-n", min=1, help="Only the first N problems (in input order)."),
]
WarmupOption = Annotated[
    bool,
    typer.Option(
        "--warmup/--no-warmup",
        help="Solve one untimed question first so that model loading is not timed.",
    ),
]


def _fields(items: list[str] | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in items or []:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise InvalidInputError(f"--field {item!r} must look like question=COLUMN")
        fields[key.strip()] = column.strip()
    return fields


def _problems(
    dataset: str,
    data_file: Path | None,
    fields: list[str] | None,
    answer_format: str | None,
    limit: int | None,
    seed: int,
) -> tuple[str, list[Problem]]:
    problems = load_dataset(
        dataset, data_file=data_file, fields=_fields(fields), answer_format=answer_format
    )
    if not problems:
        raise InvalidInputError(f"dataset {dataset!r} holds no problems")
    name = problems[0].dataset
    return name, select_subset(problems, limit, seed)


def bench(
    dataset: DatasetOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory.")],
    policy: PolicyOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    limit: LimitOption = None,
    sample_seed: SeedOption = 0,
    data_file: DataFileOption = None,
    field: FieldOption = None,
    answer_format: FormatOption = None,
    force: ForceOption = False,
    retry_errors: RetryOption = False,
    progress: ProgressOption = True,
    warmup: WarmupOption = True,
    max_problems: MaxProblemsOption = None,
    until: UntilOption = None,
    concurrency: ConcurrencyOption = 1,
    problem_timeout: ProblemTimeoutOption = None,
    problem_max_tokens: ProblemTokensOption = None,
) -> None:
    """Solve a dataset (or a seeded subset) with one policy; resumable, results in --out."""
    from specs_core.eval.sweep import RunOptions, bench_spec, run_one
    from specs_core.resolution import resolve_config

    name, problems = _problems(dataset, data_file, field, answer_format, limit, sample_seed)
    resolved = resolve_config(config, policy, overrides or [])
    budget = _budget(problem_timeout, problem_max_tokens)
    spec = bench_spec(resolved, name, problems, limit=limit, sample_seed=sample_seed, budget=budget)
    run = RunOptions(
        force=force,
        retry_errors=retry_errors,
        progress=progress,
        warmup=warmup,
        max_problems=max_problems,
        until=until,
        concurrency=concurrency,
    )
    with _say_what_is_saved(out):
        summary = run_one(resolved, spec, out, run)
    typer.echo(_summary_line(summary, out))


def _saved_rows(out: Path) -> int:
    """Rows of the runs under ``out`` (a run directory or a sweep directory)."""
    from specs_core.eval.results import ResultsLog

    files = [out / "results.jsonl", *sorted(out.glob("*/results.jsonl"))]
    return sum(len(ResultsLog(f).load(repair=False)) for f in files if f.is_file())


@contextmanager
def _say_what_is_saved(out: Path) -> Iterator[None]:
    """On Ctrl-C, tell what is saved before the command exits 130 (``specs_core.cli.run``)."""
    try:
        yield
    except KeyboardInterrupt:
        try:
            saved = f"{_saved_rows(out)} finished problems are saved"
        except Exception:  # the message must not hide the interrupt
            saved = "the finished problems are saved"
        typer.echo(f"{saved} in {out}; run the same command again to resume", err=True)
        raise


def _summary_line(summary: dict[str, Any], out: Path) -> str:
    acc = summary["accuracy"]
    ci = summary["accuracy_ci95"]
    mean = summary["latency_s"]["mean"]
    parts = [
        f"{summary['dataset']} {summary['policy']}: {summary['n']}/{summary['subset_size']} done",
        "accuracy -" if acc is None else f"accuracy {acc:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]",
        "mean latency -" if mean is None else f"mean latency {mean:.2f}s",
    ]
    if summary["n_errors"]:
        parts.append(f"{summary['n_errors']} errors")
    return ", ".join(parts) + f" -> {out / 'summary.json'}"


def sweep(
    dataset: DatasetOption,
    param: Annotated[
        str, typer.Option("--param", help="The config key to vary, e.g. policy.tau_acc.")
    ],
    values: Annotated[str, typer.Option("--values", help="Comma-separated values, e.g. 5,7,9.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The sweep directory.")],
    policy: PolicyOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    limit: LimitOption = None,
    sample_seed: SeedOption = 0,
    data_file: DataFileOption = None,
    field: FieldOption = None,
    answer_format: FormatOption = None,
    force: ForceOption = False,
    retry_errors: RetryOption = False,
    progress: ProgressOption = True,
    warmup: WarmupOption = True,
    max_problems: MaxProblemsOption = None,
    until: UntilOption = None,
    concurrency: ConcurrencyOption = 1,
    problem_timeout: ProblemTimeoutOption = None,
    problem_max_tokens: ProblemTokensOption = None,
) -> None:
    """One bench run per value of a config key (OUT/KEY=VALUE), then OUT/report.md and plots."""
    from specs_core.eval.sweep import RunOptions, parse_values, run_sweep
    from specs_core.resolution import resolve_config

    name, problems = _problems(dataset, data_file, field, answer_format, limit, sample_seed)
    resolved = resolve_config(config, policy, overrides or [])
    run = RunOptions(
        force=force,
        retry_errors=retry_errors,
        progress=progress,
        warmup=warmup,
        max_problems=max_problems,
        until=until,
        concurrency=concurrency,
    )
    with _say_what_is_saved(out):
        dirs = run_sweep(
            resolved,
            param,
            parse_values(values),
            name,
            problems,
            out,
            limit=limit,
            sample_seed=sample_seed,
            run=run,
            budget=_budget(problem_timeout, problem_max_tokens),
        )
    typer.echo(f"{len(dirs)} runs; report: {out / 'report.md'}, plots: {out / 'plots'}")


def report(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories, or sweep directories holding runs.")
    ],
    baseline: Annotated[
        Path | None, typer.Option("--baseline", "-b", help="The baseline run (default: first).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the markdown here (else stdout).")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Write the two PNG plots in this directory.")
    ] = None,
) -> None:
    """Compare runs side by side: markdown table and PNG plots, from results.jsonl only."""
    from specs_core.eval.report import write_report

    text = write_report(runs, baseline=baseline, out=out, plots=plots)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"report: {out}" + (f", plots: {plots}" if plots else ""))


def _reward_config(spec: str) -> dict[str, Any]:
    """``NAME`` or ``NAME:key=value,key=value`` as a reward-model config."""
    from specs_core.config import parse_override

    name, _, rest = spec.partition(":")
    if not name.strip():
        raise InvalidInputError(f"--reward {spec!r} names no reward model; write NAME[:key=value]")
    config: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        try:
            key, value = parse_override(item)
        except Exception as e:
            raise InvalidInputError(
                f"--reward {spec!r}: {item!r} must look like key=value ({e})"
            ) from e
        config[key] = value
    return config


def rewards_eval(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="specs bench run directories, or JSONL files of {question, steps or "
            "solution, correct or gold}."
        ),
    ],
    reward: Annotated[
        list[str] | None,
        typer.Option(
            "--reward",
            "-r",
            help="A reward model to score with: NAME or NAME:key=value,... "
            "(e.g. judge:model=target, likelihood). Repeatable.",
        ),
    ] = None,
    recorded: Annotated[
        bool,
        typer.Option(
            "--recorded/--no-recorded",
            help="Also evaluate the final scores the runs recorded (costs nothing).",
        ),
    ] = True,
    config: ConfigOption = None,
    overrides: SetOption = None,
    aggregation: Annotated[
        str, typer.Option("--aggregation", help="How step rewards make a solution's score.")
    ] = "last",
    limit: FirstProblemsOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Directory for scores.jsonl (resumable cache), report.md, metrics.json and "
            "the plots.",
        ),
    ] = None,
    fit: Annotated[
        bool,
        typer.Option("--fit", help="Also print each verifier's logistic calibration."),
    ] = False,
    resamples: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples of the AUC interval.")
    ] = 1000,
    progress: ProgressOption = True,
) -> None:
    """Measure reward models on labelled solutions: AUC, selection, calibration and cost."""
    from specs_core.config import load_config
    from specs_core.eval import verifiers as v
    from specs_core.eval.runner import _progress
    from specs_core.rewards import Aggregation
    from specs_core.solver import Specs

    try:
        how = Aggregation(aggregation)
    except ValueError as e:
        allowed = ", ".join(a.value for a in Aggregation)
        raise InvalidInputError(f"--aggregation {aggregation!r}: use one of {allowed}") from e
    solutions = v.first_problems(v.load_solutions(sources), limit)
    if not solutions:
        raise InvalidInputError("the sources hold no graded solution to evaluate")
    labels = list(reward or [])
    if not labels and not recorded:
        raise InvalidInputError("nothing to evaluate: give --reward NAME or keep --recorded")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    cache = v.ScoreCache(out / "scores.jsonl" if out is not None else None)
    reports: list[v.VerifierReport] = []
    if recorded and any(s.recorded is not None for s in solutions):
        reports.append(v.evaluate(v.RECORDED, solutions, None, resamples=resamples))
    if labels:
        with Specs(load_config(config, overrides or [])) as specs:
            models = {
                label: specs.build_reward_model(_reward_config(label), f"--reward {label}")
                for label in labels
            }
            bar = _progress(len(v.group_by_problem(solutions)), 0, "scoring", progress)
            try:
                scored = v.score_solutions(
                    solutions, models, cache, on_problem=lambda done, total: bar.update(1)
                )
            finally:
                bar.close()
                for model in models.values():
                    model.close()
        for label in labels:
            rewards = {key: s.rewards for key, s in scored[label].items()}
            reports.append(
                v.evaluate(
                    label,
                    solutions,
                    rewards,
                    aggregation=how,
                    costs=scored[label],
                    resamples=resamples,
                )
            )
    text = v.render_markdown(reports)
    if fit:
        fits = []
        for r in reports:
            a, b = v.fit_platt([sc for sc, _ in r.scores], [y for _, y in r.scores])
            fits.append(f"- {r.name}: P(correct) = sigmoid({a:.3f} * logit(score) + {b:.3f})")
        text += "\nLogistic calibration (fitted on these solutions):\n\n" + "\n".join(fits) + "\n"
    typer.echo(text, nl=False)
    if out is not None:
        (out / "report.md").write_text(text, encoding="utf-8")
        (out / "metrics.json").write_text(
            json.dumps([r.as_dict() for r in reports], indent=2) + "\n", encoding="utf-8"
        )
        v.plot_reliability(reports, out / "reliability.png")
        v.plot_histograms(reports, out / "histograms.png")
        typer.echo(f"report: {out / 'report.md'}, plots: {out}/reliability.png, histograms.png")


def calibrate(
    runs: Annotated[
        list[Path],
        typer.Argument(help="specs bench runs (with traces) made with the config's reward model."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the calibrated config here.")],
    config: ConfigOption = None,
    overrides: SetOption = None,
    switch_rate: Annotated[
        float | None,
        typer.Option("--switch-rate", min=0, max=1, help="tau_sw: share of target steps to pass."),
    ] = None,
    switch_precision: Annotated[
        float | None,
        typer.Option(
            "--switch-precision",
            min=0,
            max=1,
            help="tau_sw: lowest value whose passing steps come from solved problems this often.",
        ),
    ] = None,
    accept_rate: Annotated[
        float | None,
        typer.Option("--accept-rate", min=0, max=1, help="tau_acc: share of draft steps to pass."),
    ] = None,
    accept_precision: Annotated[
        float | None,
        typer.Option(
            "--accept-precision",
            min=0,
            max=1,
            help="tau_acc: lowest value whose accepted steps come from solved problems this often.",
        ),
    ] = None,
) -> None:
    """Fit SPECS's tau_sw and tau_acc to the reward model's scores in traced runs."""
    from specs_core.config import load_config
    from specs_core.eval import calibrate as cal
    from specs_core.resolution import resolve_policy, resolved_data

    cfg = load_config(config, overrides or [])
    resolved = resolved_data(cfg)
    if "reward" not in resolved:
        raise InvalidInputError("the config has no reward: section to calibrate thresholds for")
    beta = float(resolve_policy(cfg, "specs").data().get("beta", 1.0))
    steps = cal.read_step_values(runs, resolved["reward"], beta)
    result = cal.calibrate(
        steps,
        switch_rate=switch_rate,
        switch_precision=switch_precision,
        accept_rate=accept_rate,
        accept_precision=accept_precision,
        beta=beta,
    )
    data = result.apply(cfg.model_dump(mode="json", exclude_none=True))
    load_config(data)  # the written config must load
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for line in cal.describe(result):
        typer.echo(line)
    typer.echo(f"config: {out}")


def rewards_train(
    sources: Annotated[
        list[Path],
        typer.Argument(help="specs bench runs or JSONL files of labelled solutions to train on."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the probe's JSON here.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="The role whose hidden states the probe reads.")
    ] = "target",
    config: ConfigOption = None,
    overrides: SetOption = None,
    l2: Annotated[
        str, typer.Option("--l2", help="L2 strengths to choose from by cross-validation.")
    ] = "1,10,100,1000",
    limit: FirstProblemsOption = None,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            "--exclude",
            "-x",
            help="Leave out the problems of these runs or files (the evaluation sets), so that "
            "training stays disjoint from them. Repeatable.",
        ),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Train a probe reward model on a model's hidden states at the step ends of labelled
    solutions (each step labelled with its solution's outcome)."""
    import numpy as np

    from specs_core.config import load_config
    from specs_core.eval import verifiers as v
    from specs_core.eval.runner import _progress
    from specs_core.probe import step_prompts, train_probe
    from specs_core.protocols import HiddenStateReader
    from specs_core.solver import Specs
    from specs_core.text import DEFAULT_STEP_DELIMITER, DEFAULT_SYSTEM_PROMPT

    try:
        grid = [float(x) for x in l2.split(",") if x.strip()]
    except ValueError as e:
        raise InvalidInputError(f"--l2 {l2!r} must be numbers separated by commas") from e
    if not grid or any(x <= 0 for x in grid):
        raise InvalidInputError(f"--l2 {l2!r} must list positive numbers")
    held_out = {s.problem for s in v.load_solutions(exclude or [])}
    solutions = [s for s in v.load_solutions(sources) if s.problem not in held_out]
    groups = v.group_by_problem(v.first_problems(solutions, limit))
    if not groups:
        raise InvalidInputError("the sources hold no graded solution to train on")
    rows: list[list[float]] = []
    labels: list[bool] = []
    problems: list[str] = []
    with Specs(load_config(config, overrides or [])) as specs:
        reader = specs.model(model)
        if not isinstance(reader, HiddenStateReader):
            raise InvalidInputError(
                f"the {model} model ({reader.name}) cannot return hidden states; use llama.cpp"
            )
        bar = _progress(len(groups), 0, "reading hidden states", progress)
        try:
            for problem, group in groups.items():
                for s in group:
                    steps = [step_content(x) for x in s.steps]
                    prompts = step_prompts(
                        s.question, steps, DEFAULT_SYSTEM_PROMPT, DEFAULT_STEP_DELIMITER
                    )
                    rows += reader.hidden_states(prompts)
                    labels += [s.correct] * len(steps)
                    problems += [problem] * len(steps)
                bar.update(1)
        finally:
            bar.close()
        artifact = train_probe(
            np.asarray(rows, dtype=np.float64),
            labels,
            problems,
            l2_grid=grid,
            model_name=reader.name,
            model_sha256=reader.weights_sha256,
            meta={
                "sources": [str(p) for p in sources],
                "problem_ids": sorted(groups),
                "excluded": [str(p) for p in exclude or []],
                "solutions": sum(len(g) for g in groups.values()),
                "correct_solutions": sum(s.correct for g in groups.values() for s in g),
            },
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    artifact.save(out)
    for strength, value in artifact.meta["cross_validated_step_auc"].items():
        shown = "–" if value is None else f"{value:.3f}"
        typer.echo(f"l2 {strength}: held-out step AUC {shown}")
    typer.echo(
        f"probe: {out} ({artifact.dim} features of {artifact.model_name}, l2 "
        f"{artifact.meta['l2']}, {artifact.meta['steps']} steps of "
        f"{artifact.meta['problems']} problems)"
    )


def replay(
    runs: Annotated[list[Path], typer.Argument(help="specs bench run directories to price.")],
    costs: Annotated[
        Path, typer.Option("--costs", help="A cost table (benchmarks/gpu_step_costs.py).")
    ],
    prompt_tokens: Annotated[
        int, typer.Option(min=0, help="Tokens of a problem's prompt (template and question).")
    ] = 128,
    reward: Annotated[
        bool,
        typer.Option(
            "--reward/--no-reward",
            help="Price a PRM call per step (off for a reward model that costs nothing, such as "
            "likelihood).",
        ),
    ] = False,
    acceptance: Annotated[
        str, typer.Option(help="Acceptance rates for the modelled SPECS / beam search ratio.")
    ] = "0,0.25,0.5,0.75,1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Price stored runs with a cost table: the modelled latency on its hardware next to the
    measured one, and the modelled SPECS / target beam search ratio by draft acceptance rate."""
    from specs_core.eval.replay import CostTable, replay_run, speculation_ratio

    table = CostTable.load(costs)
    if not runs:
        raise InvalidInputError("give at least one run directory")
    try:
        rates = [float(x) for x in acceptance.split(",") if x.strip()]
    except ValueError as e:
        raise InvalidInputError(f"--acceptance {acceptance!r} must be numbers") from e
    results = [replay_run(r, table, prompt_tokens=prompt_tokens, reward=reward) for r in runs]
    measured_rates = {r["run"]: r["draft_acceptance"] for r in results if r["draft_acceptance"]}
    steps = sum(r["steps"] for r in results)
    problems = sum(r["problems"] for r in results) or 1
    profile = {"steps": max(1, round(steps / problems)), "prompt_tokens": prompt_tokens}
    ratio = speculation_ratio(
        table,
        sorted({*rates, *measured_rates.values()}),
        steps=profile["steps"],
        prompt_tokens=prompt_tokens,
        reward=reward and table.has("prm_score"),
    )
    if as_json:
        payload = {
            "table": dict(table.meta),
            "runs": [{k: v for k, v in r.items() if k != "per_problem"} for r in results],
            "specs_over_beam": {str(a): v for a, v in ratio.items()},
            "profile": profile,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    where = table.meta.get("device", "?")
    typer.echo(f"cost table: {costs} ({where}, {table.meta.get('source', 'measured')})")
    typer.echo("| run | problems | modelled s | measured s | modelled / measured | acceptance |")
    typer.echo("|---|---|---|---|---|---|")
    for r in results:
        ratio_text = (
            "-" if r["modelled_over_measured"] is None else f"{r['modelled_over_measured']:.2f}"
        )
        rate = "-" if r["draft_acceptance"] is None else f"{r['draft_acceptance']:.0%}"
        typer.echo(
            f"| {r['run']} | {r['problems']} | {r['modelled_s']:.1f} | {r['measured_s']:.1f} | "
            f"{ratio_text} | {rate} |"
        )
    typer.echo(
        f"\nmodelled SPECS / target beam search (n 4, {profile['steps']} steps of 64 tokens):"
    )
    for a, value in ratio.items():
        named = [Path(run).name for run, rate in measured_rates.items() if rate == a]
        label = f" (measured in {', '.join(named)})" if named else ""
        typer.echo(f"  acceptance {a:.0%}: {value:.2f}x{label}")


def add_commands(app: typer.Typer) -> None:
    """Add ``bench``, ``sweep``, ``report``, ``calibrate`` and ``rewards eval`` to a typer
    application."""
    app.command("bench")(bench)
    app.command("sweep")(sweep)
    app.command("report")(report)
    app.command("calibrate")(calibrate)
    app.command("replay")(replay)
    rewards = typer.Typer(
        name="rewards", help="Measure reward models.", no_args_is_help=True, add_completion=False
    )
    rewards.command("eval")(rewards_eval)
    rewards.command("train")(rewards_train)
    app.add_typer(rewards)
