"""What a :class:`~specs_langchain.SpecsRunnable` returns and streams.

- :class:`SpecsOutput`: the structured result, which is specs' one result schema
  (:class:`specs_core.schema.ResultRecord`): answer, full solution, latency per phase, tokens per
  model, every counter and the per-step trace, JSON-ready so that tracers can record it.
- :class:`StepTrace`: one committed step and the decision that produced it
  (:class:`specs_core.schema.StepTrace`); it is also the payload of the per-step custom event.
- :class:`StepChunk`: a streamed step. It is the step's text (a ``str``, so text parsers such as
  ``StrOutputParser`` stream it through) carrying its :class:`StepTrace` as ``.step``.
"""

from __future__ import annotations

from typing import Any

from specs_core.schema import CandidateTrace, ResultRecord, StepTrace, TokenCounts

__all__ = ["CandidateTrace", "SpecsOutput", "StepChunk", "StepTrace", "TokenCounts"]

SpecsOutput = ResultRecord
"""The structured result of one question: :class:`specs_core.schema.ResultRecord`."""


class StepChunk(str):
    """A streamed step: the step's text, with its trace as :attr:`step`.

    A ``StepChunk`` is a ``str`` so that text parsers downstream stream it through, but it cannot
    be concatenated on its left (``chunk + x`` raises ``TypeError``; ``"" + chunk`` and
    ``"".join(chunks)`` work). That is how LangChain folds a stream whose chunks are not addable:
    it keeps the last chunk, so the folded stream equals the final output that ``invoke``
    returns, and a non-streaming parser after the runnable receives that final output.

    Attributes:
        step: the committed step, its decision and candidate scores.
    """

    step: StepTrace

    def __new__(cls, step: StepTrace) -> StepChunk:
        """Build the chunk of ``step``."""
        chunk = super().__new__(cls, step.text)
        chunk.step = step
        return chunk

    def __add__(self, other: str) -> str:
        return NotImplemented

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.step,)

    def __repr__(self) -> str:
        return (
            f"StepChunk(index={self.step.index}, source={self.step.source!r}, "
            f"decision={self.step.decision!r}, text={str(self)!r})"
        )
