"""``SpecsRunnable``: a LangChain runnable that answers a question with a specs search policy.

Streaming is the source of truth: every call runs the search in a worker thread
(:class:`~specs_core.streaming.SolveStream`) and turns each committed step into a
:class:`~specs_langchain.outputs.StepChunk` and a ``specs_step`` custom event, then the result
into the final output and a ``specs_result`` custom event. ``invoke`` keeps the last item of that
same stream, so streamed and non-streamed calls give the same final output for the same seed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.runnables import ConfigurableField, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field, model_validator
from specs_core.config import SpecsConfig
from specs_core.errors import InvalidInputError
from specs_core.plugins import Registry
from specs_core.resolution import resolve_policy
from specs_core.solver import Specs
from specs_core.streaming import Solve, SolveStream
from specs_core.types import SearchResult, StepCallback, StepRecord

from specs_langchain.inputs import SpecsInput, SpecsQuestion, read_question
from specs_langchain.outputs import SpecsOutput, StepChunk, StepTrace

__all__ = ["RESULT_EVENT", "SEARCH_FIELDS", "STEP_EVENT", "OutputKind", "SpecsRunnable"]

STEP_EVENT = "specs_step"
"""Name of the custom event sent for each committed step (data: a :class:`StepTrace` dump)."""

RESULT_EVENT = "specs_result"
"""Name of the custom event sent with the result (data: :meth:`SpecsOutput.summary`)."""

OutputKind = Literal["answer", "solution", "result"]
"""What a call returns: the answer text, the full solution text, or a :class:`SpecsOutput`."""

SEARCH_FIELDS: tuple[str, ...] = (
    "policy",
    "policy_options",
    "n",
    "temperature",
    "max_steps",
    "seed",
    "tau_acc",
    "tau_sw",
    "beta",
    "output",
)
"""Fields that :meth:`SpecsRunnable.configurable_search` exposes by default."""

_OPTION_FIELDS = ("n", "temperature", "max_steps", "seed", "tau_acc", "tau_sw", "beta")


def _fold(chunks: Iterable[Any]) -> Any:
    """Join input chunks the way LangChain does: add them, or keep the last when not addable."""
    final: Any = None
    got_first = False
    for chunk in chunks:
        if not got_first:
            final, got_first = chunk, True
            continue
        try:
            final = final + chunk
        except TypeError:
            final = chunk
    if not got_first:
        raise InvalidInputError("the runnable received no input; pass the question to solve")
    return final


async def _afold(chunks: AsyncIterator[Any]) -> Any:
    return _fold([chunk async for chunk in chunks])


def _reject_kwargs(kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise InvalidInputError(
            f"SpecsRunnable takes no call keyword arguments (got {', '.join(sorted(kwargs))}); "
            "set search options as fields (SpecsRunnable(..., n=4)) or per call through "
            "configurable_search() and RunnableConfig"
        )


class SpecsRunnable(RunnableSerializable[SpecsInput, Any]):
    """Answers questions with a specs search policy, as a LangChain runnable.

    Build it from a specs config (``SpecsRunnable.from_config("examples/configs/toy.yaml")``) or
    around an existing :class:`~specs_core.Specs` (``SpecsRunnable(specs=specs)``). Models are
    loaded once on first use and shared by every call, by ``batch`` and by configured copies.

    Inputs: a string, a dict with ``question`` (and optionally ``system``), a prompt value, or a
    list of messages whose last human message is the question (a system message replaces the
    policy's system prompt). Output: see ``output``. ``stream`` yields a :class:`StepChunk` for
    each step as the policy commits it, then the final output. Callbacks receive the run's
    start/end/error and, per step, a ``specs_step`` custom event with the draft/target decision
    and scores, then a ``specs_result`` event with latency and tokens.

    Search options left ``None`` keep the config's value; a value set here replaces it (and is
    rejected, naming the key, by a policy that has no such option).

    Example:
        >>> specs = SpecsRunnable.from_config("examples/configs/toy.yaml")  # doctest: +SKIP
        >>> chain = prompt | specs | parser  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    specs: Specs = Field(description="the specs facade holding the config and the loaded models")
    policy: str | None = Field(
        default=None, description="registered policy name (None: the config's policy)"
    )
    policy_options: dict[str, Any] = Field(
        default_factory=dict,
        description="policy options set on top of the config's (each must be an option of the "
        "policy)",
    )
    n: int | None = Field(default=None, ge=1, description="candidates per step (or solutions)")
    temperature: float | None = Field(default=None, ge=0.0, description="sampling temperature")
    max_steps: int | None = Field(default=None, ge=1, description="the most reasoning steps")
    seed: int | None = Field(default=None, description="seed of sampling and random choices")
    tau_acc: float | None = Field(
        default=None, description="SPECS acceptance threshold on a draft's soft score"
    )
    tau_sw: float | None = Field(
        default=None, description="SPECS threshold on a target step's reward to switch to draft"
    )
    beta: float | None = Field(default=None, description="SPECS weight of the reward")
    output: OutputKind = Field(
        default="answer",
        description="answer: the answer text; solution: the full solution text; "
        "result: a SpecsOutput with latency, tokens and the per-step trace",
    )

    @model_validator(mode="after")
    def _known_policy(self) -> SpecsRunnable:
        if self.policy is not None:
            self.specs.registry.policy(self.policy)  # PluginError listing the known policies
        return self

    @classmethod
    def from_config(
        cls,
        source: str | Path | Mapping[str, Any] | SpecsConfig | None = None,
        overrides: Iterable[str] = (),
        *,
        registry: Registry | None = None,
        **fields: Any,
    ) -> SpecsRunnable:
        """Build from a specs config: a YAML path, a mapping, a config, or ``None`` (default).

        Args:
            source: the config (``None``: the default config on the embedded models).
            overrides: ``section.key=value`` overrides, as the CLI's ``--set``.
            registry: the plugin registry (default: the process-wide one).
            **fields: fields of the runnable (``policy``, ``n``, ``output``...).

        Raises:
            ConfigError: the config is malformed.
            PluginError: the config names an unknown policy.
        """
        return cls(specs=Specs.from_config(source, overrides, registry), **fields)

    # -- LangChain metadata -----------------------------------------------------------------

    @property
    def InputType(self) -> Any:
        """The accepted input types."""
        return SpecsInput

    @property
    def OutputType(self) -> Any:
        """The type ``invoke`` returns for the chosen ``output``."""
        return SpecsOutput if self.output == "result" else str

    def configurable_search(self, *fields: str) -> RunnableSerializable[SpecsInput, Any]:
        """Expose search fields for per-call configuration, each under its own name as id.

        ``runnable.configurable_search("policy", "tau_acc")`` then
        ``.invoke(q, config={"configurable": {"policy": "beam_search"}})``.

        Args:
            *fields: field names (default: :data:`SEARCH_FIELDS`).

        Raises:
            InvalidInputError: a name is not a search field.
        """
        names = fields or SEARCH_FIELDS
        unknown = [f for f in names if f not in SEARCH_FIELDS]
        if unknown:
            raise InvalidInputError(
                f"not search fields: {', '.join(unknown)}; choose from {', '.join(SEARCH_FIELDS)}"
            )
        model_fields = type(self).model_fields
        return self.configurable_fields(
            **{
                name: ConfigurableField(
                    id=name, name=name, description=model_fields[name].description
                )
                for name in names
            }
        )

    # -- the search -------------------------------------------------------------------------

    def search_call(self) -> tuple[str, dict[str, Any]]:
        """The policy name and the full options this runnable passes to ``Specs.solve``.

        Resolved like every other caller's (:func:`specs_core.resolution.resolve_policy`): the
        config's options (for another policy, those it also accepts), then ``policy_options``,
        then the fields set here; a field the policy does not take is an error.
        """
        overrides = dict(self.policy_options)
        for key in _OPTION_FIELDS:
            value = getattr(self, key)
            if value is not None:
                overrides[key] = value
        resolved = resolve_policy(self.specs.config, self.policy, overrides, self.specs.registry)
        options = resolved.data()
        del options["name"]
        return resolved.name, options

    def _solver(self, asked: SpecsQuestion) -> Solve:
        name, options = self.search_call()
        if asked.system is not None:
            options["system_prompt"] = asked.system
        specs = self.specs

        def solve(on_step: StepCallback) -> SearchResult:
            with specs.reproducible(name):
                return specs.solve(asked.question, policy=name, options=options, on_step=on_step)

        return solve

    def _translate(self, item: StepRecord | SearchResult) -> tuple[Any, str, dict[str, Any]]:
        """The chunk, the custom event name and its data for one item of the search stream."""
        if isinstance(item, StepRecord):
            trace = StepTrace.from_record(item)
            return StepChunk(trace), STEP_EVENT, trace.model_dump(mode="json")
        result = SpecsOutput.from_result(item)
        final: Any
        if self.output == "result":
            final = result
        elif self.output == "solution":
            final = result.text
        else:
            final = result.answer or ""
        return final, RESULT_EVENT, result.summary()

    def _outputs(self, value: Any, run_manager: CallbackManagerForChainRun) -> Iterator[Any]:
        stream = SolveStream(self._solver(read_question(value)))
        for item in stream:
            chunk, event, data = self._translate(item)
            run_manager.get_child().on_custom_event(event, data, run_id=run_manager.run_id)
            yield chunk

    async def _aoutputs(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun
    ) -> AsyncIterator[Any]:
        stream = SolveStream(self._solver(read_question(value)))
        async for item in stream.aiter():
            chunk, event, data = self._translate(item)
            await run_manager.get_child().on_custom_event(event, data, run_id=run_manager.run_id)
            yield chunk

    # -- Runnable API -----------------------------------------------------------------------

    def _join(self, value: Any, run_manager: CallbackManagerForChainRun) -> Any:
        final: Any = None
        for chunk in self._outputs(value, run_manager):
            final = chunk
        return final

    async def _ajoin(self, value: Any, run_manager: AsyncCallbackManagerForChainRun) -> Any:
        final: Any = None
        async for chunk in self._aoutputs(value, run_manager):
            final = chunk
        return final

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Solve one question and return the final output (the last item of the stream)."""
        _reject_kwargs(kwargs)
        return self._call_with_config(self._join, input, config)

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """Async :meth:`invoke`; the search runs in a worker thread."""
        _reject_kwargs(kwargs)
        return await self._acall_with_config(self._ajoin, input, config)

    def _transform_body(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun
    ) -> Iterator[Any]:
        yield from self._outputs(_fold(inputs), run_manager)

    async def _atransform_body(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun
    ) -> AsyncIterator[Any]:
        async for chunk in self._aoutputs(await _afold(inputs), run_manager):
            yield chunk

    def transform(
        self,
        input: Iterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """Join the input chunks into one question, then stream steps and the final output."""
        _reject_kwargs(kwargs)
        yield from self._transform_stream_with_config(input, self._transform_body, config)

    async def atransform(
        self,
        input: AsyncIterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """Async :meth:`transform`."""
        _reject_kwargs(kwargs)
        async for chunk in self._atransform_stream_with_config(
            input, self._atransform_body, config
        ):
            yield chunk

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """Yield a :class:`StepChunk` per committed step as it happens, then the final output."""
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""

        async def single() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(single(), config, **kwargs):
            yield chunk

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free the loaded models (shared with every copy built from this runnable)."""
        self.specs.close()

    def __enter__(self) -> SpecsRunnable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
