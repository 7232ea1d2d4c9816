"""The evaluation harness: datasets, grading, the resumable bench runner, sweeps and reports.

Heavy helpers (math-verify, matplotlib, tqdm; the ``eval`` extra) are imported only when used.

Example:
    >>> from specs_core import Specs
    >>> from specs_core.eval import BenchSpec, load_dataset, run_bench, select_subset
    >>> problems = select_subset(load_dataset("gsm8k"), limit=20, seed=0)
    >>> with Specs.from_config("examples/configs/toy.yaml") as specs:  # doctest: +SKIP
    ...     summary = run_bench(specs, BenchSpec("gsm8k", problems, policy="specs"), "runs/toy")
"""

from __future__ import annotations

from specs_core.eval.datasets import (
    BUILTIN_DATASETS,
    AnswerFormat,
    Problem,
    load_aime,
    load_dataset,
    load_jsonl,
    load_olympiadbench,
    select_subset,
)
from specs_core.eval.grading import Grade, extract_prediction, grade, grade_problem
from specs_core.eval.report import load_run, write_report
from specs_core.eval.results import ResultsLog, summarize
from specs_core.eval.runner import BenchSpec, Solver, fingerprint, run_bench
from specs_core.eval.stats import paired_difference, wilson

__all__ = [
    "BUILTIN_DATASETS",
    "AnswerFormat",
    "BenchSpec",
    "Grade",
    "Problem",
    "ResultsLog",
    "Solver",
    "extract_prediction",
    "fingerprint",
    "grade",
    "grade_problem",
    "load_aime",
    "load_dataset",
    "load_jsonl",
    "load_olympiadbench",
    "load_run",
    "paired_difference",
    "run_bench",
    "select_subset",
    "summarize",
    "wilson",
    "write_report",
]
