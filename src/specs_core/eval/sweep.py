"""Turning command-line choices into runs: resolved configs, bench specs, and parameter sweeps.

A sweep runs one bench per value of one config key (``policy.tau_acc=5,7,9``) into
``OUT/tau_acc=5``, ``OUT/tau_acc=7``, ... (each resumable), then writes ``OUT/report.md`` and
``OUT/plots/``. When only policy options change, the models are loaded once and shared by every
run of the sweep.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specs_core.config import SpecsConfig
from specs_core.errors import InvalidInputError
from specs_core.eval.datasets import Problem
from specs_core.eval.report import write_report
from specs_core.eval.runner import BenchSpec, Solver, run_bench
from specs_core.plugins import Registry, get_registry
from specs_core.resolution import resolve_config, resolved_data
from specs_core.search import Budget
from specs_core.solver import Specs

__all__ = [
    "RunOptions",
    "bench_spec",
    "parse_values",
    "run_one",
    "run_sweep",
    "sweep_dir_name",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How runs are driven (the same for every run of a sweep)."""

    force: bool = False
    retry_errors: bool = False
    progress: bool = True
    warmup: bool = True
    max_problems: int | None = None
    until: int | None = None
    concurrency: int = 1


def bench_spec(
    config: SpecsConfig,
    dataset: str,
    problems: Sequence[Problem],
    *,
    limit: int | None,
    sample_seed: int,
    registry: Registry | None = None,
    budget: Budget | None = None,
) -> BenchSpec:
    """The run of ``config``'s policy on ``problems``; every section is checked up front.

    Raises:
        ConfigError: an option is unknown or invalid.
        PluginError: a backend, reward model or policy is unknown.
    """
    return BenchSpec(
        dataset=dataset,
        problems=tuple(problems),
        policy=config.policy.name,
        options=config.policy.options(),
        config=resolved_data(config, registry),
        limit=limit,
        sample_seed=sample_seed,
        budget=budget,
    )


def run_one(
    config: SpecsConfig,
    spec: BenchSpec,
    out: Path,
    run: RunOptions,
    solver: Solver | None = None,
) -> dict[str, Any]:
    """Run ``spec`` with ``solver``, or with the models of ``config`` (loaded, then closed)."""
    if solver is not None:
        return run_bench(
            solver,
            spec,
            out,
            force=run.force,
            retry_errors=run.retry_errors,
            progress=run.progress,
            warmup=run.warmup,
            max_problems=run.max_problems,
            until=run.until,
            concurrency=run.concurrency,
        )
    with Specs(config) as specs:
        return run_bench(
            specs,
            spec,
            out,
            force=run.force,
            retry_errors=run.retry_errors,
            progress=run.progress,
            warmup=run.warmup,
            max_problems=run.max_problems,
            until=run.until,
            concurrency=run.concurrency,
        )


def parse_values(text: str) -> list[str]:
    """``"5,7,9"`` -> ``["5", "7", "9"]`` (each parsed later as YAML, like ``--set``).

    Raises:
        InvalidInputError: no value is given, or one repeats.
    """
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise InvalidInputError("--values needs at least one value, e.g. --values 5,7,9")
    if len(set(values)) != len(values):
        raise InvalidInputError(f"--values repeats a value: {text!r}")
    return values


def sweep_dir_name(param: str, value: str) -> str:
    """``policy.tau_acc``, ``7`` -> ``tau_acc=7`` (characters unsafe in paths become ``_``)."""
    return re.sub(r"[^\w.=+-]", "_", f"{param.rsplit('.', 1)[-1]}={value}")


def run_sweep(
    base: SpecsConfig,
    param: str,
    values: Sequence[str],
    dataset: str,
    problems: Sequence[Problem],
    out: str | Path,
    *,
    limit: int | None,
    sample_seed: int,
    run: RunOptions = RunOptions(),
    registry: Registry | None = None,
    budget: Budget | None = None,
) -> list[Path]:
    """One bench run per value of ``param``, then a report of them all.

    Args:
        base: the resolved config every run starts from.
        param: a dotted config key; a bare name means ``policy.<name>``.
        values: the values, as ``--set`` text.
        dataset: the set's name.
        problems: the subset every run solves.
        out: the sweep directory.
        limit: the subset's ``--limit``.
        sample_seed: the subset's seed.
        run: force, retry, progress and warm-up choices.
        registry: the plugin registry (default: the process-wide one).
        budget: what each problem's search may spend (``None``: no limit).

    Returns:
        The run directories, in the order of ``values``.

    Raises:
        ConfigError: a value is invalid for ``param`` (checked for every value before any run).
    """
    registry = registry or get_registry()
    key = param if "." in param else f"policy.{param}"
    root = Path(out)
    configs = [resolve_config(base, None, [f"{key}={value}"], registry) for value in values]
    specs_list = [
        bench_spec(
            c,
            dataset,
            problems,
            limit=limit,
            sample_seed=sample_seed,
            registry=registry,
            budget=budget,
        )
        for c in configs
    ]
    dirs = [root / sweep_dir_name(key, v) for v in values]
    policy_only = key.startswith("policy.") and key != "policy.name"
    if policy_only:
        with Specs(base, registry) as shared:
            for config, spec, where in zip(configs, specs_list, dirs, strict=True):
                log.info("sweep: %s -> %s", key, where.name)
                run_one(config, spec, where, run, solver=shared)
    else:
        for config, spec, where in zip(configs, specs_list, dirs, strict=True):
            log.info("sweep: %s -> %s", key, where.name)
            with Specs(config, registry) as specs:
                run_one(config, spec, where, run, solver=specs)
    write_report(dirs, out=root / "report.md", plots=root / "plots")
    return dirs
