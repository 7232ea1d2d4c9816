"""Shared pieces of the LangChain integration tests: toy configs, recording callback handlers, a
gated test-double policy that commits steps only when the test allows it, and a logged toy
backend."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from pydantic import BaseModel, ConfigDict
from specs_core.accounting import Accountant
from specs_core.errors import BackendError
from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterBackend, RegisterPolicy
from specs_core.protocols import Capabilities, Roles
from specs_core.testing.toy import ToyLanguageModel
from specs_core.types import (
    Completion,
    Decision,
    Prompt,
    SamplingParams,
    SearchResult,
    StepCallback,
    StepRecord,
    StepSource,
    StopReason,
)

QUESTION = "What is 2 + 3?"
QUESTIONS = ("What is 2 + 3?", "What is 4 + 7?", "What is 1 + 1 + 1?", "What is 9 + 2?")


def toy_config(**policy: Any) -> dict[str, Any]:
    """SPECS on the toy draft and target with the toy reward model."""
    return {
        "draft": {"backend": "toy", "variant": "draft"},
        "target": {"backend": "toy", "variant": "target"},
        "reward": {"name": "toy"},
        "policy": {"name": "specs", "n": 4, **policy},
    }


class Recorder(BaseCallbackHandler):
    """A real LangChain callback handler that records what it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.run_names: dict[UUID, str] = {}
        self.lock = threading.Lock()

    def _add(self, kind: str, data: Any) -> None:
        with self.lock:
            self.events.append((kind, data))

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, name: str | None = None, **kw: Any
    ) -> None:
        self.run_names[run_id] = name or ""
        self._add("start", {"run_id": run_id, "name": name, "inputs": inputs})

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._add("end", {"run_id": run_id, "name": self.run_names.get(run_id), "outputs": outputs})

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self._add("error", {"run_id": run_id, "name": self.run_names.get(run_id), "error": error})

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        self._add(name, {"run_id": run_id, "data": data})

    def of(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """Recorded payloads of one kind (and, for start/end/error, one run name)."""
        return [d for k, d in self.events if k == kind and (name is None or d.get("name") == name)]


class AsyncRecorder(AsyncCallbackHandler):
    """An async callback handler recording custom events and the run lifecycle."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self.events.append(("start", kw.get("name")))

    async def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self.events.append(("end", outputs))

    async def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
        self.events.append((name, data))


class GatedOptions(BaseModel):
    """Options of the gated test-double policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = 3
    fail_at: int | None = None
    system_prompt: str | None = None


class GatedPolicy:
    """A test-double policy: commits one step, then waits for a permit before each next step.

    It runs no model; it lets a test observe what the consumer sees while the search is still
    running, and whether the search is told to stop.
    """

    permits = threading.Semaphore(0)
    committed: list[int] = []  # noqa: RUF012 (shared with the test on purpose)
    state: dict[str, bool] = {}  # noqa: RUF012

    def __init__(self, options: GatedOptions, roles: Roles) -> None:
        self.options = options

    @classmethod
    def reset(cls) -> None:
        cls.permits = threading.Semaphore(0)
        cls.committed = []
        cls.state = {"finished": False, "stopped": False}

    def run(self, question: str, *, on_step: StepCallback | None = None) -> SearchResult:
        acct = Accountant()
        records = []
        try:
            for i in range(self.options.steps):
                if i > 0 and not type(self).permits.acquire(timeout=10):
                    raise BackendError("the test never allowed the next step")
                if self.options.fail_at == i:
                    raise BackendError(f"engine failed at step {i}")
                record = StepRecord(
                    index=i,
                    source=StepSource.TARGET,
                    text=f"step {i}\n\n",
                    reward=None,
                    drafted=False,
                    accepted=None,
                    decision=Decision.TARGET,
                )
                records.append(record)
                if on_step is not None:
                    on_step(record)
                type(self).committed.append(i)
        except BaseException:
            type(self).state["stopped"] = True
            raise
        type(self).state["finished"] = True
        text = "".join(r.text for r in records) + "\\boxed{5}"
        return SearchResult(
            question=question,
            policy="gated",
            text=text,
            answer="5",
            steps=tuple(records),
            solution_steps=tuple(r.text for r in records),
            final_score=None,
            finished=True,
            stop_reason=StopReason.FINISHED,
            usage=acct.finish(),
        )


class GatedPlugin:
    """Registers the gated test-double policy (passed to ``build_registry(extra_plugins=...)``)."""

    @staticmethod
    @hookimpl
    def register_policies(register: RegisterPolicy) -> None:
        register("gated", GatedPolicy, options=GatedOptions, roles=("target",))


class LoggedToyOptions(BaseModel):
    """Options of the logged toy backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = "target"
    concurrent: bool = True
    ms_per_token: float = 0.0


class LoggedToyModel(ToyLanguageModel):
    """The real toy model, declaring ``concurrent`` as told and logging the question of each
    call, so that a test sees whether searches on different questions overlapped."""

    calls: list[str] = []  # noqa: RUF012 (shared with the test on purpose)

    def __init__(self, options: LoggedToyOptions) -> None:
        super().__init__(options.variant, ms_per_token=options.ms_per_token)
        self._concurrent = options.concurrent

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, concurrent=self._concurrent)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        type(self).calls.append(prompts[0].question)
        return super().generate(prompts, params)


class LoggedToyPlugin:
    """Registers the ``logged_toy`` backend."""

    @staticmethod
    @hookimpl
    def register_backends(register: RegisterBackend) -> None:
        register("logged_toy", LoggedToyModel, options=LoggedToyOptions)


def interleaved(calls: Sequence[str]) -> bool:
    """Whether calls of one question were interrupted by calls of another."""
    runs = [q for i, q in enumerate(calls) if i == 0 or calls[i - 1] != q]
    return len(runs) != len(set(runs))


def comparable(output: Any) -> dict[str, Any]:
    """A structured output without what depends on timing and on the models' prefix caches."""
    data: dict[str, Any] = output.model_dump(exclude={"latency_s"})
    for counts in data["tokens"].values():
        counts.pop("cached")
    return data
