"""The benchmark runner: solve a subset of a set with one policy, resumably.

A run lives in one directory:

- ``config.yaml``: the resolved configuration that was run;
- ``run.json``: the run's identity (dataset, subset, policy, fingerprint);
- ``results.jsonl``: one row per problem, appended and flushed as each finishes;
- ``traces.jsonl.gz``: every candidate of every step of each problem's search, written just
  before its row (see :func:`specs_core.eval.results.trace_record`);
- ``summary.json``: the figures of :func:`specs_core.eval.results.summarize`;
- ``run.lock``: held (an OS file lock) by the one process writing the run; a second writer is
  refused instead of solving every problem again beside it.

Starting a run in a directory that already holds one resumes it: problems already in
``results.jsonl`` are skipped, a torn last line from a killed run is dropped, and a different
configuration or subset (a different fingerprint) is refused unless ``force`` starts over.
A ``config.yaml`` that no run wrote (no ``run.json`` beside it) is never overwritten nor deleted.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from specs_core.backend_kit.http import HttpOptions
from specs_core.errors import (
    BackendUnavailableError,
    CapabilityError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
    PluginError,
    SpecsError,
    install_hint,
)
from specs_core.eval.datasets import Problem, dataset_digest
from specs_core.eval.grading import grade_problem
from specs_core.eval.results import (
    ResultsLog,
    TraceLog,
    error_row,
    result_row,
    summarize,
    trace_record,
)
from specs_core.filelock import lock_exclusive
from specs_core.search import Budget, SearchCancelled, cancellable, spending
from specs_core.types import SearchResult, StepCallback, StepRecord

__all__ = [
    "FATAL_ERRORS",
    "WARMUP_QUESTION",
    "BenchSpec",
    "Solver",
    "fingerprint",
    "run_bench",
]

log = logging.getLogger(__name__)

#: Errors that stop a run instead of being recorded: they would fail every problem alike.
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    PluginError,
    BackendUnavailableError,
    ModelNotFoundError,
    CapabilityError,
)

#: Solved once, unrecorded, before the first timed problem so that model loading is not timed.
WARMUP_QUESTION = "What is 1 + 1?"

RESULTS_FILE = "results.jsonl"
TRACES_FILE = "traces.jsonl.gz"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"


class Solver(Protocol):
    """What the runner needs: :class:`specs_core.Specs` or anything with its ``solve``."""

    def solve(
        self,
        question: str,
        *,
        policy: str | None = None,
        options: Mapping[str, Any] | None = None,
        on_step: StepCallback | None = None,
    ) -> SearchResult:
        """Solve one question with a policy and its options, reporting each committed step
        (a solver without ``on_step`` still works: the progress display then skips steps)."""
        ...


@dataclass(frozen=True)
class BenchSpec:
    """What one run solves and how.

    Attributes:
        dataset: the set's name.
        problems: the subset to solve, in order.
        policy: the policy name passed to ``solve``.
        options: the policy options passed to ``solve`` (``None``: the solver's default).
        config: the resolved configuration as plain data (written to ``config.yaml`` and part of
            the fingerprint).
        limit: the ``--limit`` that chose the subset (``None``: every problem).
        sample_seed: the seed that chose the subset.
        budget: what each problem's search may spend (``None``: no limit); part of the
            fingerprint, since a cut search gives another result.
    """

    dataset: str
    problems: Sequence[Problem]
    policy: str
    options: Mapping[str, Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    sample_seed: int = 0
    budget: Budget | None = None


#: Options that change how a server is reached, never what a model answers: every connection
#: option of the HTTP backends but the server's address. They are left out of a run's identity,
#: so a longer timeout or a rotated key does not stop a run from resuming.
CONNECTION_OPTIONS = frozenset(HttpOptions.model_fields) - {"url", "urls"}

#: Options never written to disk: a run's ``config.yaml`` leaves them out (name the variable
#: that holds a key with ``api_key_env`` instead).
SECRET_OPTIONS = frozenset({"api_key"})


def without_keys(data: Any, keys: frozenset[str]) -> Any:
    """``data`` (plain config data) without ``keys``, at any depth."""
    if isinstance(data, Mapping):
        return {k: without_keys(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list | tuple):
        return [without_keys(v, keys) for v in data]
    return data


def fingerprint(spec: BenchSpec, *, legacy: bool = False) -> str:
    """A hash of the resolved config (which holds the policy options) without its connection
    options, the policy, and the problem subset; the options passed to ``solve`` count only when
    there is no config. ``legacy``: the hash of earlier versions, connection options included
    (their runs still resume)."""
    options = dict(spec.options) if spec.options is not None and not spec.config else None
    config = spec.config if legacy else without_keys(spec.config, CONNECTION_OPTIONS)
    payload = {
        "config": config,
        "policy": spec.policy,
        "options": options,
        "dataset": spec.dataset,
        "subset": dataset_digest(spec.problems),
    }
    if spec.budget is not None:  # absent otherwise: runs without a budget keep their identity
        payload["budget"] = {"seconds": spec.budget.seconds, "tokens": spec.budget.tokens}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _run_meta(spec: BenchSpec, fp: str) -> dict[str, Any]:
    return {
        "dataset": spec.dataset,
        "policy": spec.policy,
        "fingerprint": fp,
        "subset_size": len(spec.problems),
        "limit": spec.limit,
        "sample_seed": spec.sample_seed,
    }


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out`` for this process; the OS releases the lock if the process dies.

    Raises:
        InvalidInputError: another process is writing the run.
    """
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+b") as handle:
        try:
            lock_exclusive(handle)
        except OSError:
            raise InvalidInputError(
                f"{out} is being written by another specs bench or sweep process; wait for it "
                "to finish (then run again to resume), or use another --out"
            ) from None
        yield


def _prepare(out: Path, spec: BenchSpec, force: bool) -> str:
    """Check the run directory (with ``force`` clear a previous run); the run's fingerprint."""
    fp = fingerprint(spec)
    run_file = out / RUN_FILE
    if not run_file.exists() and (out / CONFIG_FILE).exists():
        raise ConfigError(
            f"{out} holds a config.yaml that no specs bench run wrote (no run.json beside it); "
            "use another --out directory so that it is not overwritten"
        )
    if force:
        for name in (RESULTS_FILE, TRACES_FILE, SUMMARY_FILE, RUN_FILE, CONFIG_FILE):
            (out / name).unlink(missing_ok=True)
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8")).get("fingerprint")
        except (ValueError, AttributeError) as e:
            raise ConfigError(f"{run_file} is damaged ({e}); use a new --out or --force") from e
        if previous != fp and previous == fingerprint(spec, legacy=True):
            fp = previous  # a run of an earlier version keeps its identity
        if previous != fp:
            raise ConfigError(
                f"{out} holds a run with a different config, policy or subset (fingerprint "
                f"{previous} != {fp}); use a new --out directory, or --force to start over"
            )
    elif (out / RESULTS_FILE).exists() and (out / RESULTS_FILE).stat().st_size:
        raise ConfigError(
            f"{out} holds results.jsonl without run.json; use a new --out or --force to start over"
        )
    meta = _run_meta(spec, fp) | {"created": datetime.now(UTC).isoformat(timespec="seconds")}
    if not run_file.exists():
        _write_json(run_file, meta)
    (out / CONFIG_FILE).write_text(
        yaml.safe_dump(without_keys(spec.config, SECRET_OPTIONS), sort_keys=False),
        encoding="utf-8",
    )
    return fp


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError as e:
        raise SpecsError(f"progress bars need tqdm: {install_hint('eval')}") from e
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="problem",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def _postfix(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    acc = sum(1 for r in rows if r.get("correct")) / len(rows)
    totals = [r["latency_s"]["total"] for r in rows if "total" in r.get("latency_s", {})]
    lat = f"{sum(totals) / len(totals):.2f}s" if totals else "-"
    errors = sum(1 for r in rows if r.get("error"))
    return f"acc {acc:.1%} lat {lat}" + (f" err {errors}" if errors else "")


def _accepts_on_step(solver: Solver) -> bool:
    """Whether ``solver.solve`` takes ``on_step`` (solvers written before it was added don't)."""
    try:
        parameters = inspect.signature(solver.solve).parameters
    except (TypeError, ValueError):
        return False
    return "on_step" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _step_display(bar: Any, head: str, problem_id: str, start: float) -> StepCallback:
    """A step callback showing the problem's progress (step, source, seconds) on the bar, so
    that a long problem does not look frozen."""

    def show(step: StepRecord) -> None:
        bar.set_postfix_str(
            f"{head} | {problem_id}: step {step.index + 1} by {step.source.value}, "
            f"{time.perf_counter() - start:.0f}s",
            refresh=True,
        )

    return show


def _solve_one(
    solver: Solver,
    spec: BenchSpec,
    fp: str,
    index: int,
    problem: Problem,
    on_step: StepCallback | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Solve one problem: its row, and its trace (``None`` when it raised)."""
    start = time.perf_counter()
    try:
        with spending(spec.budget):
            result = solver.solve(
                problem.question,
                policy=spec.policy,
                options=spec.options,
                **({"on_step": on_step} if on_step is not None else {}),
            )
    except FATAL_ERRORS:
        raise
    except Exception as e:
        log.warning("problem %s raised %s: %s", problem.id, type(e).__name__, e)
        row = error_row(
            problem,
            index,
            e,
            policy=spec.policy,
            fingerprint=fp,
            wall_s=time.perf_counter() - start,
        )
        return row, None
    wall = time.perf_counter() - start
    verdict = grade_problem(problem, result.text or (result.answer or ""))
    row = result_row(problem, index, result, verdict, fingerprint=fp, wall_s=wall)
    return row, trace_record(problem, index, result)


def _solve_concurrently(
    solver: Solver,
    spec: BenchSpec,
    fp: str,
    todo: list[tuple[int, Problem]],
    concurrency: int,
    record: Callable[[dict[str, Any], dict[str, Any] | None], None],
) -> None:
    """Solve ``todo`` with ``concurrency`` searches in flight, recording each as it finishes
    (in this thread). On Ctrl-C or a fatal error the searches in flight are cancelled before
    their next model call and joined; what finished stays recorded."""
    stop = threading.Event()
    reproducible = getattr(solver, "reproducible", None)

    def work(index: int, problem: Problem) -> tuple[dict[str, Any], dict[str, Any] | None]:
        with cancellable(stop):
            if stop.is_set():
                raise SearchCancelled("the run is stopping")
            guard = reproducible(spec.policy) if reproducible is not None else nullcontext()
            with guard:
                return _solve_one(solver, spec, fp, index, problem, None)

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="specs-bench")
    futures = [pool.submit(work, index, problem) for index, problem in todo]
    try:
        for future in as_completed(futures):
            record(*future.result())
    except BaseException:
        stop.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)


def run_bench(
    solver: Solver,
    spec: BenchSpec,
    out: str | Path,
    *,
    force: bool = False,
    retry_errors: bool = False,
    progress: bool = True,
    warmup: bool = False,
    max_problems: int | None = None,
    until: int | None = None,
    concurrency: int = 1,
) -> dict[str, Any]:
    """Solve every problem of ``spec`` not yet in ``out``, and write the summary.

    Args:
        solver: a :class:`specs_core.Specs` (or anything with its ``solve``).
        spec: the dataset subset, policy and resolved config.
        out: the run directory.
        force: delete a previous run in ``out`` and start over.
        retry_errors: solve again the problems whose earlier attempt raised.
        progress: show a progress bar with running accuracy and mean latency on stderr.
        warmup: solve :data:`WARMUP_QUESTION` once, unrecorded, before the first problem.
        max_problems: solve at most this many of the remaining problems, then stop; running
            again resumes (several runs can so be advanced in turns and compared part-way).
        until: stop once the run holds this many problems, counting those solved before. Unlike
            ``max_problems`` it names where a turn ends, so running a turn again does nothing
            and a run left behind by a crash catches up.
        concurrency: problems solved at once (not part of the run's identity). Rows are
            written as problems finish; a search's result does not depend on it where the
            engine is deterministic under concurrent calls (remote servers, the toy backend);
            searches on engines whose results depend on interleaved calls (llama.cpp) run one
            at a time (:meth:`~specs_core.solver.Specs.reproducible`).

    Returns:
        The summary (also written to ``out/summary.json``).

    Raises:
        ConfigError: ``out`` holds a different run (use another directory or ``force``), or a
            ``config.yaml`` no run wrote.
        InvalidInputError: another process is writing the run in ``out``.
        SpecsError: a configuration, plugin or model error (see :data:`FATAL_ERRORS`) stops the
            run; problems already finished stay recorded.
    """
    out = Path(out)
    with _exclusive(out):
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be at least 1, got {concurrency}")
        return _run_bench(
            solver,
            spec,
            out,
            force,
            retry_errors,
            progress,
            warmup,
            max_problems,
            until,
            concurrency,
        )


def _run_bench(
    solver: Solver,
    spec: BenchSpec,
    out: Path,
    force: bool,
    retry_errors: bool,
    progress: bool,
    warmup: bool,
    max_problems: int | None,
    until: int | None,
    concurrency: int,
) -> dict[str, Any]:
    fp = _prepare(out, spec, force)
    results = ResultsLog(out / RESULTS_FILE)
    traces = TraceLog(out / TRACES_FILE)
    traces.load(repair=True)  # a trace torn by a kill would hide the traces appended after it
    wanted = {p.id for p in spec.problems}
    rows = [r for r in results.load() if r.get("id") in wanted]
    if retry_errors and any(r.get("error") for r in rows):
        rows = [r for r in rows if not r.get("error")]
        results.rewrite(rows)
    done = {r["id"] for r in rows}
    todo = [(i, p) for i, p in enumerate(spec.problems) if p.id not in done]
    if max_problems is not None:
        if max_problems < 1:
            raise InvalidInputError(f"max_problems must be at least 1, got {max_problems}")
        todo = todo[:max_problems]
    if until is not None:
        if until < 1:
            raise InvalidInputError(f"until must be at least 1, got {until}")
        todo = todo[: max(0, until - len(done))]
    if done:
        log.info("%s: resuming, %d of %d problems already done", out, len(done), len(spec.problems))
    meta = _run_meta(spec, fp)
    takes_steps = _accepts_on_step(solver)
    bar = _progress(len(spec.problems), len(done), f"{spec.dataset} {spec.policy}", progress)
    bar.set_postfix_str(_postfix(rows))

    def record(row: dict[str, Any], trace: dict[str, Any] | None) -> None:
        if trace is not None:
            traces.append(trace)
        results.append(row)
        rows.append(row)
        bar.update(1)
        bar.set_postfix_str(_postfix(rows))

    try:
        if todo and warmup:
            solver.solve(WARMUP_QUESTION, policy=spec.policy, options=spec.options)
        if concurrency == 1:
            for index, problem in todo:
                show = _step_display(bar, _postfix(rows), problem.id, time.perf_counter())
                record(*_solve_one(solver, spec, fp, index, problem, show if takes_steps else None))
        else:
            _solve_concurrently(solver, spec, fp, todo, concurrency, record)
    finally:
        bar.close()
        summary = summarize(rows, **meta, complete=len(rows) == len(spec.problems))
        _write_json(out / SUMMARY_FILE, summary)
    return summary
