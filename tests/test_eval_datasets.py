"""Shipped sets, the OlympiadBench / AIME / field-mapping loaders, and stable seeded subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from specs_core.errors import InvalidInputError
from specs_core.eval.datasets import (
    AnswerFormat,
    dataset_digest,
    load_dataset,
    select_subset,
)


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "size", "fmt"),
    [
        ("math500", 500, AnswerFormat.MATH),
        ("gsm8k", 1319, AnswerFormat.GSM8K),
        ("amc23", 40, AnswerFormat.NUMERIC),
    ],
)
def test_shipped_sets_load_by_name(name: str, size: int, fmt: AnswerFormat) -> None:
    problems = load_dataset(name)
    assert len(problems) == size
    assert len({p.id for p in problems}) == size
    assert all(p.question.strip() and p.answer and p.answer_format is fmt for p in problems)
    assert {p.dataset for p in problems} == {name}


def test_gold_answers_take_each_sets_convention() -> None:
    gsm = {p.id: p for p in load_dataset("gsm8k")}
    assert gsm["0"].answer == "18"  # the number after ####, not the worked solution
    assert all("####" not in p.answer and "," not in p.answer for p in gsm.values())
    amc = {p.id: p for p in load_dataset("amc23")}
    assert amc["0"].answer == "27"  # 27.0 in the file
    math = {p.id: p for p in load_dataset("math500")}
    first = math["test/precalculus/807.json"]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.meta == {"subject": "Precalculus", "level": 2}


def test_olympiadbench_loader_reads_its_fields(tmp_path: Path) -> None:
    rows = [
        {
            "id": 1606,
            "question": "Find the ratio.",
            "final_answer": ["$\\frac{1}{2}$"],
            "is_multiple_answer": False,
            "unit": None,
            "answer_type": "Numerical",
        },
        {
            "id": 1607,
            "question": "Find all x.",
            "final_answer": ["$3$, $5$"],
            "is_multiple_answer": True,
            "unit": None,
            "answer_type": "Numerical",
        },
        {
            "id": 1608,
            "question": "How long is the rod?",
            "final_answer": ["$12$"],
            "is_multiple_answer": False,
            "unit": "$cm$",
            "answer_type": "Numerical",
        },
    ]
    path = tmp_path / "ob.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    problems = load_dataset("olympiadbench", data_file=path)
    assert [p.id for p in problems] == ["1606", "1607", "1608"]
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "3, 5", "12"]
    assert problems[1].meta["is_multiple_answer"] is True
    assert problems[2].unit == "cm"
    assert problems[0].meta["answer_type"] == "Numerical"


def test_aime_loader_and_missing_file_message(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "aime24.jsonl",
        [
            {"id": 60, "problem": "Find m+n.", "answer": "033"},
            {"id": 61, "problem": "Q", "answer": 7},
        ],
    )
    problems = load_dataset("aime", data_file=path)
    assert [(p.id, p.answer) for p in problems] == [("60", "33"), ("61", "7")]
    assert all(p.answer_format is AnswerFormat.NUMERIC for p in problems)
    with pytest.raises(InvalidInputError, match="--data-file"):
        load_dataset("aime")


def test_any_jsonl_through_a_field_mapping(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"uid": "a", "prompt": "1+1?", "sol": "so #### 2"},
            {"uid": "b", "prompt": "2+2?", "sol": "#### 4"},
        ],
    )
    problems = load_dataset(
        str(path),
        fields={"id": "uid", "question": "prompt", "answer": "sol"},
        answer_format="gsm8k",
    )
    assert [(p.id, p.question, p.answer, p.dataset) for p in problems] == [
        ("a", "1+1?", "2", "mine"),
        ("b", "2+2?", "4", "mine"),
    ]
    numbered = load_dataset(str(path), fields={"question": "prompt", "answer": "sol"})
    assert [p.id for p in numbered] == ["0", "1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": {"question": "nope", "answer": "sol"}}, "no field 'nope'"),
        ({"fields": {"qustion": "prompt"}}, "unknown field mapping key"),
        (
            {"fields": {"question": "prompt", "answer": "sol"}, "answer_format": "latex"},
            "math, gsm8k",
        ),
    ],
)
def test_field_mapping_errors_name_the_problem(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "1+1?", "sol": "2"}])
    with pytest.raises(InvalidInputError, match=message):
        load_dataset(str(path), **kwargs)  # type: ignore[arg-type]


def test_duplicate_ids_and_unknown_names_are_refused(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "question": "q", "answer": "1"}] * 2)
    with pytest.raises(InvalidInputError, match="appears twice"):
        load_dataset(str(path), fields={"id": "id"})
    with pytest.raises(InvalidInputError, match="unknown dataset 'mmlu'"):
        load_dataset("mmlu")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.jsonl"))


def test_subset_is_seeded_nested_and_keeps_the_sets_order() -> None:
    problems = load_dataset("gsm8k")
    a = select_subset(problems, 100, seed=0)
    b = select_subset(list(reversed(problems)), 100, seed=0)
    assert len(a) == 100
    assert {p.id for p in a} == {p.id for p in b}  # the input order does not matter
    positions = {p.id: i for i, p in enumerate(problems)}
    assert [positions[p.id] for p in a] == sorted(positions[p.id] for p in a)
    assert {p.id for p in select_subset(problems, 50, seed=0)} < {p.id for p in a}
    assert {p.id for p in select_subset(problems, 100, seed=1)} != {p.id for p in a}
    assert select_subset(problems, None) == problems
    assert select_subset(problems, 5000) == problems
    with pytest.raises(InvalidInputError, match="at least 1"):
        select_subset(problems, 0)


def test_subset_does_not_depend_on_the_hash_seed() -> None:
    code = (
        "from specs_core.eval.datasets import load_dataset, select_subset\n"
        "print(','.join(p.id for p in select_subset(load_dataset('math500'), 7, seed=3)))"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1
    here = ",".join(p.id for p in select_subset(load_dataset("math500"), 7, seed=3))
    assert outputs == {here}


def test_digest_tells_subsets_apart() -> None:
    problems = load_dataset("amc23")
    assert dataset_digest(problems[:5]) == dataset_digest(list(problems[:5]))
    assert dataset_digest(problems[:5]) != dataset_digest(problems[1:6])
