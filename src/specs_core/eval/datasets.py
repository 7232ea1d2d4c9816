"""Evaluation problems: the shipped sets, loaders for other math sets, and stable subsets.

Shipped as package data and loaded by name: ``math500``, ``gsm8k`` and ``amc23``. Loaders read
OlympiadBench and AIME files, and any JSON/JSONL file through a field mapping. Each problem keeps
its gold answer in one canonical text form and the convention used to grade it
(:class:`AnswerFormat`).

Example:
    >>> problems = load_dataset("gsm8k")
    >>> subset = select_subset(problems, limit=100, seed=0)  # the same 100 on every run
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from specs_core.errors import InvalidInputError, read_utf8

__all__ = [
    "BUILTIN_DATASETS",
    "FILE_DATASETS",
    "AnswerFormat",
    "Problem",
    "dataset_digest",
    "load_aime",
    "load_dataset",
    "load_jsonl",
    "load_olympiadbench",
    "read_records",
    "select_subset",
]

#: Sets shipped inside the package, loaded by name.
BUILTIN_DATASETS: Mapping[str, str] = {
    "math500": "math500.jsonl",
    "gsm8k": "gsm8k.jsonl",
    "amc23": "amc23.jsonl",
}

#: Sets with a dedicated loader that need a file (``data_file``).
FILE_DATASETS: tuple[str, ...] = ("olympiadbench", "aime")

_DOLLAR = re.compile(r"(?<!\\)\$")  # a math delimiter, not an escaped dollar sign


class AnswerFormat(StrEnum):
    """How a gold answer is written and graded."""

    MATH = "math"
    """A LaTeX answer (MATH, OlympiadBench): compared symbolically by math-verify."""
    GSM8K = "gsm8k"
    """A number after ``####`` in the worked solution; thousands separators are ignored."""
    NUMERIC = "numeric"
    """A plain number (AMC, AIME)."""


@dataclass(frozen=True)
class Problem:
    """One evaluation problem.

    Attributes:
        id: a stable identifier, unique within its set.
        question: the problem text given to the model.
        answer: the gold answer in canonical text form (GSM8K: the number after ``####``
            without commas; numeric sets: ``27`` rather than ``27.0``).
        answer_format: how the answer is graded.
        dataset: the set's name.
        unit: a unit the answer may carry (OlympiadBench), removed from predictions.
        meta: other fields worth keeping (subject, level, answer type).
    """

    id: str
    question: str
    answer: str
    answer_format: AnswerFormat
    dataset: str
    unit: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, or of a JSON file holding a list of objects.

    Raises:
        InvalidInputError: the file is missing or a row is not a JSON object.
    """
    if not path.is_file():
        raise InvalidInputError(f"data file {str(path)!r} does not exist; pass an existing file")
    text = read_utf8(path, "data file", InvalidInputError)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InvalidInputError(f"{path}: a .json data file must hold a list of objects")
        return data
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}:{number}: not valid JSON ({e})") from e
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}:{number}: each line must be a JSON object")
        rows.append(row)
    return rows


def _number_text(value: object) -> str:
    """``27.0`` -> ``"27"``, ``"1,000"`` -> ``"1000"``; other text is kept (stripped)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        as_float = float(value)
        return str(int(as_float)) if as_float.is_integer() else repr(as_float)
    text = str(value).strip().replace(",", "")
    try:
        as_float = float(text)
    except ValueError:
        return text
    return str(int(as_float)) if as_float.is_integer() and "e" not in text.lower() else text


def _gsm8k_answer(value: object) -> str:
    """The number after the last ``####`` (the whole text when there is none), commas removed."""
    text = str(value)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return text.strip().replace(",", "")


def _field(row: Mapping[str, Any], names: Sequence[str], where: str) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise InvalidInputError(
        f"{where}: no field {' or '.join(repr(n) for n in names)} (fields: {', '.join(row)}); "
        "map the right one with --field"
    )


def _check_unique(problems: list[Problem], source: str) -> list[Problem]:
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise InvalidInputError(
                f"{source}: problem id {p.id!r} appears twice; ids must be unique "
                "(map another id field with --field id=NAME, or leave it out to number the rows)"
            )
        seen.add(p.id)
    return problems


def load_jsonl(
    path: str | Path,
    *,
    question: str = "question",
    answer: str = "answer",
    id: str | None = None,
    answer_format: AnswerFormat | str = AnswerFormat.MATH,
    dataset: str | None = None,
    keep: Iterable[str] = (),
) -> list[Problem]:
    """Load problems from any JSONL (or JSON list) file through a field mapping.

    Args:
        path: the file.
        question: the field holding the problem text.
        answer: the field holding the gold answer.
        id: the field holding a unique id; ``None`` numbers the rows from 0.
        answer_format: how the gold answer is written (``math``, ``gsm8k``, ``numeric``).
        dataset: the set's name (default: the file's stem).
        keep: other fields to keep in :attr:`Problem.meta`.

    Raises:
        InvalidInputError: the file, a field or an answer format is wrong, or ids repeat.
    """
    source = Path(path)
    fmt = _answer_format(answer_format)
    name = dataset or source.stem
    problems = []
    for index, row in enumerate(read_records(source)):
        where = f"{source} row {index}"
        gold = _field(row, [answer], where)
        if fmt is AnswerFormat.GSM8K:
            gold_text = _gsm8k_answer(gold)
        elif fmt is AnswerFormat.NUMERIC:
            gold_text = _number_text(gold)
        else:
            gold_text = str(gold).strip()
        problems.append(
            Problem(
                id=str(_field(row, [id], where)) if id else str(index),
                question=str(_field(row, [question], where)),
                answer=gold_text,
                answer_format=fmt,
                dataset=name,
                meta={k: row[k] for k in keep if k in row},
            )
        )
    return _check_unique(problems, str(source))


def load_olympiadbench(path: str | Path, *, dataset: str = "olympiadbench") -> list[Problem]:
    """Load OlympiadBench rows (id, question, final_answer list, is_multiple_answer, unit,
    answer_type) from a JSON or JSONL file.

    The gold answer is the ``final_answer`` entries without their ``$`` math delimiters, joined
    with ``", "`` (math-verify then compares the set of answers when ``is_multiple_answer``).
    """
    source = Path(path)
    problems = []
    for index, row in enumerate(read_records(source)):
        where = f"{source} row {index}"
        finals = _field(row, ["final_answer"], where)
        if isinstance(finals, str):
            finals = [finals]
        if not isinstance(finals, list) or not finals:
            raise InvalidInputError(f"{where}: final_answer must be a non-empty list of strings")
        answers = [_DOLLAR.sub("", str(a)).strip() for a in finals]
        unit = _DOLLAR.sub("", str(row.get("unit") or "")).strip()
        problems.append(
            Problem(
                id=str(row.get("id", index)),
                question=str(_field(row, ["question"], where)),
                answer=", ".join(answers),
                answer_format=AnswerFormat.MATH,
                dataset=dataset,
                unit=unit,
                meta={
                    "answer_type": row.get("answer_type"),
                    "is_multiple_answer": bool(row.get("is_multiple_answer", False)),
                    "subfield": row.get("subfield"),
                },
            )
        )
    return _check_unique(problems, str(source))


def load_aime(path: str | Path, *, dataset: str = "aime") -> list[Problem]:
    """Load AIME problems (``problem`` or ``question``, integer ``answer``, optional ``id``)."""
    source = Path(path)
    problems = []
    for index, row in enumerate(read_records(source)):
        where = f"{source} row {index}"
        problems.append(
            Problem(
                id=str(row.get("id", row.get("ID", index))),
                question=str(_field(row, ["problem", "question", "Problem", "Question"], where)),
                answer=_number_text(_field(row, ["answer", "Answer"], where)),
                answer_format=AnswerFormat.NUMERIC,
                dataset=dataset,
                meta={k: row[k] for k in ("year", "url") if k in row},
            )
        )
    return _check_unique(problems, str(source))


def _load_builtin(name: str, path: Path | None) -> list[Problem]:
    if path is None:
        resource = resources.files("specs_core.eval").joinpath("data", BUILTIN_DATASETS[name])
        with resources.as_file(resource) as file:
            return _load_builtin(name, file)
    if name == "math500":
        return load_jsonl(
            path, question="problem", id="unique_id", dataset=name, keep=("subject", "level")
        )
    if name == "gsm8k":
        return load_jsonl(path, id="idx", answer_format=AnswerFormat.GSM8K, dataset=name)
    return load_jsonl(
        path, question="problem", id="id", answer_format=AnswerFormat.NUMERIC, dataset=name
    )


def _answer_format(value: AnswerFormat | str) -> AnswerFormat:
    try:
        return AnswerFormat(value)
    except ValueError as e:
        allowed = ", ".join(f.value for f in AnswerFormat)
        raise InvalidInputError(f"unknown answer format {value!r}; use one of {allowed}") from e


def load_dataset(
    name: str,
    *,
    data_file: str | Path | None = None,
    fields: Mapping[str, str] | None = None,
    answer_format: AnswerFormat | str | None = None,
) -> list[Problem]:
    """Load a set by name, or any JSON/JSONL file by path.

    Args:
        name: ``math500``, ``gsm8k``, ``amc23`` (shipped), ``olympiadbench`` or ``aime`` (need
            ``data_file``), or the path of a ``.jsonl``/``.json`` file.
        data_file: the file for ``olympiadbench``/``aime``, or a replacement file for a shipped set.
        fields: for a file given by path: ``{"question": ..., "answer": ..., "id": ...}``.
        answer_format: for a file given by path (default ``math``).

    Raises:
        InvalidInputError: the name is unknown, a needed file is missing, or a field is wrong.
    """
    file = Path(data_file) if data_file is not None else None
    loaders: dict[str, Callable[[Path], list[Problem]]] = {
        "olympiadbench": load_olympiadbench,
        "aime": load_aime,
    }
    if name in BUILTIN_DATASETS:
        return _load_builtin(name, file)
    if name in loaders:
        if file is None:
            raise InvalidInputError(
                f"dataset {name!r} is not shipped; pass its JSON/JSONL file with --data-file"
            )
        return loaders[name](file)
    path = Path(name)
    if path.suffix in {".jsonl", ".json"} or path.is_file():
        mapping = dict(fields or {})
        unknown = set(mapping) - {"question", "answer", "id"}
        if unknown:
            raise InvalidInputError(
                f"unknown field mapping key(s) {', '.join(sorted(unknown))}; "
                "map question=..., answer=..., id=..."
            )
        return load_jsonl(
            path,
            question=mapping.get("question", "question"),
            answer=mapping.get("answer", "answer"),
            id=mapping.get("id"),
            answer_format=answer_format or AnswerFormat.MATH,
        )
    known = ", ".join([*BUILTIN_DATASETS, *FILE_DATASETS])
    raise InvalidInputError(
        f"unknown dataset {name!r}; use one of {known}, or the path of a .jsonl file"
    )


def select_subset(problems: Sequence[Problem], limit: int | None, seed: int = 0) -> list[Problem]:
    """A seeded sample of ``limit`` problems, the same on every run and machine.

    The ids are sorted, shuffled by ``random.Random(seed)`` and the first ``limit`` kept, so a
    smaller subset is contained in a larger one with the same seed. Problems keep the set's order.
    ``limit=None`` (or a limit of at least the set's size) keeps every problem.

    Raises:
        InvalidInputError: ``limit`` is below 1.
    """
    if limit is None or limit >= len(problems):
        return list(problems)
    if limit < 1:
        raise InvalidInputError(f"--limit must be at least 1, got {limit}")
    order = sorted(p.id for p in problems)
    random.Random(seed).shuffle(order)
    chosen = set(order[:limit])
    return [p for p in problems if p.id in chosen]


def dataset_digest(problems: Iterable[Problem]) -> str:
    """A short hash of the problems' ids, questions and gold answers (identifies a subset)."""
    digest = hashlib.sha256()
    for p in problems:
        digest.update(json.dumps([p.dataset, p.id, p.question, p.answer]).encode("utf-8"))
    return digest.hexdigest()[:16]
