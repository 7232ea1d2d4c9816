"""The ``vllm-prm`` reward model: a process reward model served by vLLM's pooling runner.

vLLM serves step-level PRMs as pooling models (``vllm serve MODEL --runner pooling``). Two
styles, each read one pass per solution (every step's reward comes from the same forward pass):

``style: pooling`` (Qwen2.5-Math-PRM, architecture ``Qwen2ForProcessRewardModel``): the input is
the chat prompt (system, question) with the assistant's steps each followed by ``step_tag``
(``<extra_0>``). ``POST /pooling`` with ``{"model", "input": [token ids...], "task":
"token_classify"}`` answers, per input, ``data``: rows of class probabilities ``[p_neg, p_pos]``
-- one row per token (vLLM's STEP pooling without a ``step_tag_id``), or only the rows at the step
tag (with ``--pooler-config '{"step_tag_id": ID}'``). Both are read: rows are taken at the step
tag's positions when there is one per token. The reward is ``row[positive_label]`` (rows that are
not probabilities are put through a softmax first). Source: vLLM's pooling API
(``vllm/entrypoints/pooling/pooling``: ``PoolingRequest`` / ``PoolingResponse``) and its STEP
pooling (``vllm/model_executor/layers/pooler/tokwise/methods.py``, ``StepPool``: ``data[idx]``
where the prompt token equals ``step_tag_id``).

``style: embeddings`` (Skywork-o1-Open-PRM and other value heads): the input is
``question_prefix + question + question_suffix``, then each step's tokens followed by the
``step_token`` id, every piece tokenized on its own as Skywork's reference code does.
``POST /v1/embeddings`` with ``{"model", "input": [token ids...]}`` answers one value per token (or
per step, as above); the reward is the sigmoid of the value at each step's closing token.

Token ids come from the server's own tokenizer (vLLM's ``POST /tokenize`` with ``prompt`` and
``add_special_tokens``), so the step positions are the server's. The served model's name comes
from ``GET /v1/models`` unless ``model`` is set.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field
from specs_core.backend_kit.chat import (
    QWEN25_MATH_SYSTEM,
    render_tagged_steps,
)
from specs_core.backend_kit.http import HttpOptions, Transport, chunks, field
from specs_core.backend_kit.served import ServedRewardModel
from specs_core.errors import ConfigError, ProtocolError, RewardError

__all__ = ["VLLMRewardModel", "VLLMRewardOptions", "build_reward"]

_TOKENIZED_MEMO = 4096


class VLLMRewardOptions(HttpOptions):
    """Options of the ``vllm-prm`` reward model (connection options from HttpOptions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    model: str | None = Field(
        default=None, description="the served model's name (default: the first of /v1/models)"
    )
    style: Literal["pooling", "embeddings"] = Field(
        default="pooling",
        description="pooling: /pooling class rows (Qwen2.5-Math-PRM); embeddings: /v1/embeddings "
        "values (Skywork-o1-Open-PRM)",
    )
    # style: pooling
    chat_template: str | None = Field(default="qwen2.5", description="how the input is built")
    tokenizer: str | None = None
    system: str | None = QWEN25_MATH_SYSTEM
    step_tag: str = Field(default="<extra_0>", description="follows every step (one token)")
    task: str | None = Field(
        default="token_classify", description="the pooling task sent (None: leave it out)"
    )
    positive_label: int = Field(default=1, ge=0, description="the class meaning 'correct'")
    # style: embeddings
    question_prefix: str = Field(default="", description="text before the question")
    question_suffix: str = Field(default="\n", description="text between question and steps")
    step_token: str = Field(default="\n", description="the token closing every step")
    max_batch: int = Field(default=16, ge=1, description="solutions per request")


class VLLMRewardModel(ServedRewardModel):
    """Rewards every step of a solution from one pass of a PRM served by vLLM.

    Args:
        options: validated options.
        transport: a ready transport (tests); default: an :class:`HttpPool` from options.
    """

    kind = "vllm-prm"
    extra = "openai"

    def __init__(self, options: VLLMRewardOptions, transport: Transport | None = None) -> None:
        super().__init__(options, transport)
        self.options: VLLMRewardOptions = options
        self._served: str | None = options.model
        self._memo: OrderedDict[tuple[str, bool], list[int]] = OrderedDict()

    # -- the server ---------------------------------------------------------------------------

    def _model(self, transport: Transport) -> str:
        if self._served is None:
            where = f"{transport.where} /v1/models"
            cards = field(transport.request("GET", "/v1/models"), "data", list, where)
            if not cards or not isinstance(cards[0], Mapping) or "id" not in cards[0]:
                raise ProtocolError(f"{where}: no served model listed")
            self._served = str(cards[0]["id"])
        return self._served

    def _tokens(self, transport: Transport, text: str, special: bool) -> list[int]:
        key = (text, special)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        where = f"{transport.where} /tokenize"
        body = {"model": self._model(transport), "prompt": text, "add_special_tokens": special}
        ids = field(transport.request("POST", "/tokenize", body), "tokens", list, where)
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise ProtocolError(f"{where}: 'tokens' must be token ids")
        with self._lock:
            self._memo[key] = ids
            while len(self._memo) > _TOKENIZED_MEMO:
                self._memo.popitem(last=False)
        return ids

    def _single_token(self, transport: Transport, text: str, option: str) -> int:
        ids = self._tokens(transport, text, False)
        if len(ids) != 1:
            raise ConfigError(
                f"{option} {text!r} is {len(ids)} tokens for the served tokenizer; the PRM's "
                f"rewards are read at one token: set {option} to its step token"
            )
        return ids[0]

    # -- inputs -------------------------------------------------------------------------------

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """The token ids the PRM reads for a solution, and the position of each step's reward."""
        transport = self._http()
        if self.options.style == "pooling":
            tag = self.options.step_tag
            tag_id = self._single_token(transport, tag, "step_tag")
            renderer = self._chat()
            text = render_tagged_steps(renderer, question, steps, tag, self.options.system)
            ids = self._tokens(transport, text, False)
            positions = [i for i, t in enumerate(ids) if t == tag_id]
            if len(positions) != len(steps):
                raise RewardError(
                    f"{self.name}: {len(steps)} steps but {len(positions)} step tags in the PRM's "
                    f"input; a step or the question holds {tag!r} itself"
                )
            return ids, positions
        step_id = self._single_token(transport, self.options.step_token, "step_token")
        head = self.options.question_prefix + question + self.options.question_suffix
        ids = list(self._tokens(transport, head, True))
        positions = []
        for step in steps:
            ids.extend(self._tokens(transport, step, False) if step else [])
            ids.append(step_id)
            positions.append(len(ids) - 1)
        return ids, positions

    # -- outputs ------------------------------------------------------------------------------

    def _probability(self, row: object, where: str) -> float:
        if not isinstance(row, list) or not row:
            raise ProtocolError(f"{where}: a row must be a non-empty list of numbers")
        values = [_number(v, where) for v in row]
        index = self.options.positive_label
        if index >= len(values):
            raise ProtocolError(
                f"{where}: a row has {len(values)} classes; positive_label {index} is out of range"
            )
        if not (all(0.0 <= v <= 1.0 for v in values) and abs(sum(values) - 1.0) < 1e-3):
            top = max(values)
            weights = [math.exp(v - top) for v in values]
            return weights[index] / sum(weights)
        return values[index]

    def _at_steps(
        self, values: list[Any], ids: list[int], positions: list[int], where: str
    ) -> list[Any]:
        if len(values) == len(ids):
            return [values[p] for p in positions]
        if len(values) == len(positions):
            return values
        raise ProtocolError(
            f"{where}: {len(values)} outputs for an input of {len(ids)} tokens with "
            f"{len(positions)} steps; expected one per token or one per step"
        )

    def _score_encoded(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        transport = self._http()
        model = self._model(transport)
        pooling = self.options.style == "pooling"
        path = "/pooling" if pooling else "/v1/embeddings"
        where = f"{transport.where} {path}"

        def run(batch: Sequence[tuple[list[int], list[int]]]) -> tuple[list[list[float]], int]:
            body: dict[str, Any] = {"model": model, "input": [ids for ids, _ in batch]}
            if pooling and self.options.task:
                body["task"] = self.options.task
            data = field(transport.request("POST", path, body), "data", list, where)
            if len(data) != len(batch):
                raise ProtocolError(f"{where}: {len(data)} results for {len(batch)} inputs")
            out = []
            for i, ((ids, positions), item) in enumerate(zip(batch, data, strict=True)):
                at = f"{where} [{i}]"
                key = "data" if pooling else "embedding"
                values = self._at_steps(field(item, key, list, at), ids, positions, at)
                if pooling:
                    out.append([self._probability(row, at) for row in values])
                else:
                    out.append([1.0 / (1.0 + math.exp(-_number(v, at))) for v in values])
            return out, sum(len(ids) for ids, _ in batch)

        done = transport.map(run, list(chunks(encoded, self.options.max_batch)))
        self._tally.add(prompt=sum(tokens for _, tokens in done), cached=0)
        return [rewards for rows, _ in done for rewards in rows]

    # -- the RewardModel protocol -------------------------------------------------------------

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward of every step of every solution (one input per solution)."""
        if not solutions:
            return []
        empty = [i for i, s in enumerate(solutions) if not s]
        encoded = [self.encode(question, s) for s in solutions if s]
        scored = iter(self._score_encoded(encoded))
        return [[] if i in empty else next(scored) for i in range(len(solutions))]

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward of each solution's last step."""
        rows = self.score(question, solutions)
        if any(not r for r in rows):
            raise RewardError(f"{self.name}: a solution without steps has no last step to score")
        return [r[-1] for r in rows]


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"{where}: {value!r} is not a finite number")
    return float(value)


def build_reward(options: VLLMRewardOptions, models: Any = None) -> VLLMRewardModel:
    """The ``vllm-prm`` factory (``models`` is unused: the PRM runs on its own server)."""
    return VLLMRewardModel(options)
