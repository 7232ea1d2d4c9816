"""The ``sglang-prm`` reward model: a reward model served by SGLang, scoring partial solutions.

What SGLang serves (checked against its source): reward models run with ``--is-embedding`` and
``POST /classify`` answers one ``{"embedding": [...], "meta_info": {...}}`` per text, the head's
output pooled at the LAST token (``python/sglang/srt/models/qwen2_rm.py``: ``Qwen2ForRewardModel``,
``Pooler(pooling_type=PoolingType.LAST)``; ``/classify`` returns the embedding request's output,
``python/sglang/srt/entrypoints/http_server.py``). Its supported reward models are sequence
scorers: Qwen2.5-Math-RM-72B (``Qwen2ForRewardModel``, one logit), Skywork-Reward
(``LlamaForSequenceClassification``, ``Gemma2ForSequenceClassification``), InternLM2 reward, and
``Qwen2ForSequenceClassification`` (docs/supported_models/specialized/reward_models.md). SGLang
has no process-reward architecture: Qwen2.5-Math-PRM (``Qwen2ForProcessRewardModel``, one
prediction per step tag) is not in its model registry, so serve that one with vLLM and use
``vllm-prm``.

So ``sglang-prm`` scores every partial solution as its own text (an outcome reward model read
at each step): the chat prompt (system + question), the assistant's steps each followed by
``step_tag``, the assistant message left open; one text per partial solution, every prefix of
every solution in one batched request (:meth:`SGLangRewardModel.score`).

``output`` says how the embedding becomes a reward in [0, 1]: ``sigmoid`` (one logit, the
default: Qwen2.5-Math-RM, Skywork-Reward), ``softmax`` (class logits; ``label_index`` is the
"correct" class) or ``probability`` (the first value already is one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field
from specs_core.backend_kit.chat import (
    QWEN25_MATH_SYSTEM,
    ChatRenderer,
    render_tagged_steps,
)
from specs_core.backend_kit.http import HttpOptions, Transport, chunks, field
from specs_core.backend_kit.served import ServedRewardModel
from specs_core.errors import ProtocolError
from specs_core.rewards import score_every_prefix

__all__ = ["SGLangRewardModel", "SGLangRewardOptions"]


class SGLangRewardOptions(HttpOptions):
    """Options of the ``sglang-prm`` reward model (connection options from HttpOptions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    chat_template: str | None = Field(default="qwen2.5", description="how the PRM's input is built")
    tokenizer: str | None = None
    system: str | None = QWEN25_MATH_SYSTEM
    step_tag: str = Field(default="\n\n", description="ends every step in the model's input")
    endpoint: str = "/classify"
    output: Literal["probability", "sigmoid", "softmax"] = "sigmoid"
    label_index: int = Field(default=1, ge=0)
    max_batch: int = Field(default=32, ge=1)


class SGLangRewardModel(ServedRewardModel):
    """Rewards each step with a reward model served by SGLang's ``/classify`` endpoint.

    Args:
        options: validated options.
        transport: a ready transport (tests); default: an :class:`HttpPool` from options.
    """

    kind = "sglang-prm"
    extra = "sglang"

    def __init__(self, options: SGLangRewardOptions, transport: Transport | None = None) -> None:
        super().__init__(options, transport)
        self.options: SGLangRewardOptions = options

    def _connect(self) -> tuple[Transport, ChatRenderer]:
        return self._http(), self._chat()

    def render(self, question: str, steps: Sequence[str]) -> str:
        """The PRM's input for a partial solution: it ends with the step tag."""
        renderer = self._connect()[1]
        return render_tagged_steps(
            renderer, question, steps, self.options.step_tag, self.options.system
        )

    def _reward(self, embedding: object, where: str) -> float:
        if not isinstance(embedding, list) or not embedding:
            raise ProtocolError(f"{where}: 'embedding' must be a non-empty list of numbers")
        values = []
        for v in embedding:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ProtocolError(f"{where}: 'embedding' holds {v!r}, not a finite number")
            values.append(float(v))
        how = self.options.output
        if how == "probability":
            return values[0]
        if how == "sigmoid":
            return 1.0 / (1.0 + math.exp(-values[0]))
        index = self.options.label_index
        if index >= len(values):
            raise ProtocolError(
                f"{where}: 'embedding' has {len(values)} classes; label_index {index} is out "
                "of range"
            )
        top = max(values)
        weights = [math.exp(v - top) for v in values]
        return weights[index] / sum(weights)

    def _classify(self, texts: list[str]) -> list[float]:
        transport, _ = self._connect()
        path = self.options.endpoint
        where = f"{transport.where} {path}"
        unique = list(dict.fromkeys(texts))

        def run(batch: Sequence[str]) -> tuple[list[float], int, int]:
            outputs = transport.request("POST", path, {"text": list(batch)})
            if not isinstance(outputs, list) or len(outputs) != len(batch):
                got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
                raise ProtocolError(f"{where}: expected a list of {len(batch)} results, got {got}")
            rewards = []
            prompt = cached = 0
            for i, out in enumerate(outputs):
                rewards.append(self._reward(field(out, "embedding", list, where), f"{where} [{i}]"))
                meta = out.get("meta_info") if isinstance(out, Mapping) else None
                if isinstance(meta, Mapping):
                    prompt += int(meta.get("prompt_tokens") or 0)
                    cached += int(meta.get("cached_tokens") or 0)
            return rewards, prompt, cached

        done = transport.map(run, list(chunks(unique, self.options.max_batch)))
        # Counted here, on the caller's thread, not in the transport's workers (see TokenTally).
        self._tally.add(prompt=sum(d[1] for d in done), cached=sum(d[2] for d in done))
        table = dict(zip(unique, (r for rows, _, _ in done for r in rows), strict=True))
        return [table[t] for t in texts]

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward of each solution's last step (one text per solution)."""
        return self._classify([self.render(question, s) for s in solutions])

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward of every step of every solution (one text per prefix, one batch)."""
        return score_every_prefix(
            lambda prefixes: self._classify([self.render(question, p) for p in prefixes]), solutions
        )


def build_reward(options: SGLangRewardOptions, models: Any = None) -> SGLangRewardModel:
    """The ``sglang-prm`` factory (``models`` is unused: the PRM runs on its own server)."""
    return SGLangRewardModel(options)
