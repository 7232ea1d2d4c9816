"""Trained process reward models as reward models, each with its own step convention.

* :class:`ClassificationPRM`: a 2-class head read at a separator token placed after every step
  (Qwen2.5-Math-PRM: ``<extra_0>``, reward = P(class 1)).
* :class:`ValuePRM`: a scalar value head, sigmoid at the token closing every step
  (Skywork-o1-Open-PRM: ``BOS + question + "\\n"``, each step followed by ``"\\n"``).
* :class:`TokenPRM`: a causal LM; reward = P(good) / (P(good) + P(bad)) at a step tag
  (Math-Shepherd: ``"Step i: ... ки"``) or before the assistant's good token in a chat where
  every step is a user turn (RLHFlow).

``docs/prms.md`` lists the public checkpoints each adapter is for and their exact settings.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specs_core.errors import ConfigError, ModelNotFoundError, RewardError

from specs_transformers._engine import engine, model_output_logits
from specs_transformers.loading import ModelSource, describe_source, load_pretrained
from specs_transformers.options import (
    ClassificationPRMOptions,
    TokenPRMOptions,
    ValuePRMOptions,
)
from specs_transformers.prm_base import EncodedSolution, TrainedPRM, offsets_to_token

if TYPE_CHECKING:
    import torch

__all__ = ["ClassificationPRM", "TokenPRM", "ValuePRM"]

log = logging.getLogger(__name__)


def _encode(tokenizer: Any, text: str, *, special: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _config(source: ModelSource, options: Any) -> Any:
    tf = engine().transformers
    return load_pretrained(
        tf.AutoConfig.from_pretrained,
        source,
        "config",
        trust_remote_code=options.trust_remote_code,
        local_files_only=options.local_files_only,
    )


def _architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


class ClassificationPRM(TrainedPRM[ClassificationPRMOptions]):
    """A PRM with a 2-class token head, read at a separator token after each step.

    The solution is rendered with the tokenizer's chat template as ``[system, user: question,
    assistant: step_1 SEP step_2 SEP ... step_n SEP]``; the reward of step ``j`` is the softmax
    probability of ``positive_label`` at the ``j``-th separator. Separator text inside a step
    is removed so that separators and steps stay aligned.
    """

    kind = "classification PRM"

    @classmethod
    def from_objects(
        cls, model: Any, tokenizer: Any, *, name: str = "in-memory", **settings: Any
    ) -> ClassificationPRM:
        """Wrap a built model whose output logits are ``[batch, tokens, classes]``."""
        return cls(
            ClassificationPRMOptions(model=name, name=name, **settings),
            model=model,
            tokenizer=tokenizer,
        )

    def _prepare(self) -> None:
        sep = self.options.step_separator
        ids = _encode(self._tokenizer, sep)
        if len(ids) != 1:
            raise ConfigError(
                f"step_separator {sep!r} is {len(ids)} tokens for this tokenizer; it must be one "
                "token (a special token such as <extra_0>)"
            )
        self._sep_id = ids[0]

    def _load_model(self, source: ModelSource, dtype: torch.dtype) -> Any:
        tf = engine().transformers
        config = _config(source, self.options)
        common = {"dtype": dtype, "local_files_only": self.options.local_files_only}
        auto_map = getattr(config, "auto_map", None) or {}
        if "AutoModel" in auto_map:
            if not self.options.trust_remote_code:
                raise ConfigError(
                    f"{describe_source(source)} ships its own modeling code "
                    f"({auto_map['AutoModel']}); set trust_remote_code: true to load it"
                )
            return load_pretrained(
                tf.AutoModel.from_pretrained, source, "model", trust_remote_code=True, **common
            )
        if any(a.endswith("ForTokenClassification") for a in _architectures(config)):
            return load_pretrained(
                tf.AutoModelForTokenClassification.from_pretrained, source, "model", **common
            )
        raise ConfigError(
            f"{describe_source(source)} has no token classification head (architectures "
            f"{_architectures(config)}); use a Qwen2.5-Math-PRM style checkpoint"
        )

    def encode(self, question: str, steps: Sequence[str]) -> EncodedSolution:
        """Render the chat and find the separator after every step."""
        _, tokenizer = self._ensure_loaded()
        sep = self.options.step_separator
        messages = []
        if self.options.system_prompt is not None:
            messages.append({"role": "system", "content": self.options.system_prompt})
        messages.append({"role": "user", "content": question.replace(sep, "")})
        answer = "".join(step.replace(sep, "") + sep for step in steps)
        messages.append({"role": "assistant", "content": answer})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        ids = _encode(tokenizer, str(text))
        positions = tuple(i for i, t in enumerate(ids) if t == self._sep_id)
        return EncodedSolution(tuple(ids), positions)

    def _rewards(
        self, model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: list[tuple[int, ...]]
    ) -> list[list[float]]:
        torch = engine().torch
        logits = model_output_logits(model(input_ids=ids, attention_mask=mask))
        label = self.options.positive_label
        if logits is None or logits.dim() != 3 or logits.shape[-1] <= label:
            shape = None if logits is None else tuple(logits.shape)
            raise RewardError(
                f"{self.kind} {self.name!r} returned logits of shape {shape}; expected "
                f"[batch, tokens, classes] with more than {label} classes"
            )
        rows = []
        for i, pos in enumerate(positions):
            picked = logits[i, torch.tensor(pos, device=logits.device)].float()
            rows.append(torch.softmax(picked, dim=-1)[:, label].tolist())
        return rows


class _ValueHeadModel:
    """A base transformer with a linear value head (the ``v_head.summary`` layout)."""

    def __init__(self, base: Any, head: Any) -> None:
        self.base = base
        self.head = head
        self.config = base.config

    def parameters(self) -> Any:
        return self.base.parameters()

    def eval(self) -> _ValueHeadModel:
        self.base.eval()
        self.head.eval()
        return self

    def to(self, device: Any) -> _ValueHeadModel:
        self.base.to(device)
        self.head.to(device)
        return self

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)


def _read_value_head(directory: Path) -> dict[str, Any]:
    """The ``v_head.summary.*`` tensors of a checkpoint directory (safetensors or .bin)."""
    torch = engine().torch
    found: dict[str, Any] = {}
    for path in sorted(glob.glob(str(directory / "*.safetensors"))):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if "v_head." in key:
                    found[key.split("v_head.", 1)[1]] = handle.get_tensor(key)
    if not found:
        for path in sorted(glob.glob(str(directory / "*.bin"))):
            state = torch.load(path, map_location="cpu", weights_only=True)
            found.update({k.split("v_head.", 1)[1]: v for k, v in state.items() if "v_head." in k})
    return found


class ValuePRM(TrainedPRM[ValuePRMOptions]):
    """A PRM with a scalar value head; the reward of a step is the sigmoid of the value at the
    step token that closes it.

    Input: ``bos_token + question + question_suffix``, then for each step its tokens followed by
    the ``step_token`` id (each piece tokenized separately, as Skywork's reference code does).
    A checkpoint is either a causal LM with ``v_head.summary.{weight,bias}`` tensors (Skywork) or
    a ``*ForTokenClassification`` model with one label.
    """

    kind = "value PRM"

    @classmethod
    def from_objects(
        cls, model: Any, tokenizer: Any, *, name: str = "in-memory", **settings: Any
    ) -> ValuePRM:
        """Wrap a built model returning values ``[batch, tokens]`` or ``[batch, tokens, 1]``."""
        return cls(
            ValuePRMOptions(model=name, name=name, **settings), model=model, tokenizer=tokenizer
        )

    def _prepare(self) -> None:
        ids = _encode(self._tokenizer, self.options.step_token)
        if not ids:
            raise ConfigError(f"step_token {self.options.step_token!r} encodes to no token")
        self._step_id = ids[-1]

    def _local(self, source: ModelSource) -> ModelSource:
        if source.local:
            return source
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(
                source.location,
                revision=source.revision,
                local_files_only=self.options.local_files_only,
            )
        except Exception as e:
            raise ModelNotFoundError(
                f"cannot fetch {describe_source(source)}: {e}. Without internet access, "
                f"download it first (huggingface-cli download {source.location}) or point "
                "'model' at a local directory"
            ) from e
        return ModelSource(str(path), local=True)

    def _load_model(self, source: ModelSource, dtype: torch.dtype) -> Any:
        tf, torch = engine().transformers, engine().torch
        source = self._local(source)
        self._source = source
        config = _config(source, self.options)
        common = {"dtype": dtype, "trust_remote_code": self.options.trust_remote_code}
        if any(a.endswith("ForTokenClassification") for a in _architectures(config)):
            return load_pretrained(
                tf.AutoModelForTokenClassification.from_pretrained, source, "model", **common
            )
        tensors = _read_value_head(Path(source.location))
        if "summary.weight" not in tensors:
            raise ConfigError(
                f"{describe_source(source)} has no value head (v_head.summary.weight); use a "
                "Skywork-o1-Open-PRM style checkpoint or a one-label token classifier"
            )
        base = load_pretrained(tf.AutoModel.from_pretrained, source, "model", **common)
        weight = tensors["summary.weight"].float()
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight)
            bias = tensors.get("summary.bias")
            head.bias.copy_(bias.float() if bias is not None else torch.zeros(weight.shape[0]))
        return _ValueHeadModel(base, head)

    def encode(self, question: str, steps: Sequence[str]) -> EncodedSolution:
        """Question then steps, each closed by the step token where its reward is read."""
        _, tokenizer = self._ensure_loaded()
        bos = getattr(tokenizer, "bos_token", None) or ""
        ids = _encode(tokenizer, bos + question + self.options.question_suffix)
        positions = []
        for step in steps:
            ids.extend(_encode(tokenizer, step) if step else [])
            ids.append(self._step_id)
            positions.append(len(ids) - 1)
        return EncodedSolution(tuple(ids), tuple(positions))

    def _rewards(
        self, model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: list[tuple[int, ...]]
    ) -> list[list[float]]:
        torch = engine().torch
        out = model(input_ids=ids, attention_mask=mask)
        values = out if isinstance(out, torch.Tensor) else model_output_logits(out)
        if values is not None and values.dim() == 3 and values.shape[-1] == 1:
            values = values.squeeze(-1)
        if values is None or values.dim() != 2:
            raise RewardError(
                f"{self.kind} {self.name!r} must return one value per token ([batch, tokens])"
            )
        return [
            torch.sigmoid(values[i, torch.tensor(pos, device=values.device)].float()).tolist()
            for i, pos in enumerate(positions)
        ]


class TokenPRM(TrainedPRM[TokenPRMOptions]):
    """A causal LM used as a PRM: reward = softmax over (good, bad) logits at a step's position.

    ``style="math-shepherd"``: ``question + question_joiner`` then the steps written with
    ``step_template`` (default ``"Step {index}: {step} ки"``) joined by ``step_joiner``; the
    reward is read at each tag token. Good/bad ids default to the two tokens of ``"+ -"``.

    ``style="chat-turns"``: a chat where step ``k`` is a user turn (the first prefixed by the
    question) answered by an assistant turn holding ``good_token``; the reward is read at the
    position that predicts that token. Good/bad ids default to the last token of each.
    """

    kind = "token PRM"

    @classmethod
    def from_objects(
        cls, model: Any, tokenizer: Any, *, name: str = "in-memory", **settings: Any
    ) -> TokenPRM:
        """Wrap a built causal LM."""
        return cls(
            TokenPRMOptions(model=name, name=name, **settings), model=model, tokenizer=tokenizer
        )

    def _prepare(self) -> None:
        o, tok = self.options, self._tokenizer
        if o.style == "math-shepherd":
            pair = _encode(tok, f"{o.good_token} {o.bad_token}")
            if len(pair) != 2 and (o.good_token_id is None or o.bad_token_id is None):
                raise ConfigError(
                    f"'{o.good_token} {o.bad_token}' is {len(pair)} tokens for this tokenizer, "
                    "not 2: set good_token_id and bad_token_id"
                )
            good, bad = [*pair, 0, 0][:2]
        else:
            good, bad = _encode(tok, o.good_token)[-1], _encode(tok, o.bad_token)[-1]
        self._good = o.good_token_id if o.good_token_id is not None else good
        self._bad = o.bad_token_id if o.bad_token_id is not None else bad
        if self._good == self._bad:
            raise ConfigError("good_token and bad_token map to the same token id")

    @property
    def candidate_ids(self) -> tuple[int, int]:
        """The (good, bad) token ids."""
        self._ensure_loaded()
        return self._good, self._bad

    def _load_model(self, source: ModelSource, dtype: torch.dtype) -> Any:
        tf = engine().transformers
        return load_pretrained(
            tf.AutoModelForCausalLM.from_pretrained,
            source,
            "model",
            dtype=dtype,
            trust_remote_code=self.options.trust_remote_code,
            local_files_only=self.options.local_files_only,
        )

    def encode(self, question: str, steps: Sequence[str]) -> EncodedSolution:
        """The input and, per step, the position whose next-token logits hold its reward."""
        _, tokenizer = self._ensure_loaded()
        if self.options.style == "math-shepherd":
            return self._encode_plain(tokenizer, question, steps)
        return self._encode_chat(tokenizer, question, steps)

    def _encode_plain(self, tokenizer: Any, question: str, steps: Sequence[str]) -> EncodedSolution:
        o = self.options
        tag = o.step_tag
        before, after = o.step_template.split("{tag}", 1)
        text = question.replace(tag, "") + o.question_joiner
        tag_ends = []
        for i, step in enumerate(steps):
            clean = step.replace(tag, "")
            if i:
                text += o.step_joiner
            text += before.format(index=i + 1, step=clean) + tag
            tag_ends.append(len(text) - 1)
            text += after.format(index=i + 1, step=clean)
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        positions = tuple(offsets_to_token(offsets, end) for end in tag_ends)
        return EncodedSolution(tuple(enc["input_ids"]), positions)

    def _encode_chat(self, tokenizer: Any, question: str, steps: Sequence[str]) -> EncodedSolution:
        o = self.options
        conversation: list[dict[str, str]] = []
        starts = []
        for k, step in enumerate(steps):
            content = f"{question}{o.question_joiner}{step}" if k == 0 else step
            conversation.append({"role": "user", "content": content})
            head = tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            )
            starts.append(len(str(head)))
            conversation.append({"role": "assistant", "content": o.good_token})
        text = str(tokenizer.apply_chat_template(conversation, tokenize=False))
        for k, start in enumerate(starts):
            if text[start : start + len(o.good_token)] != o.good_token:
                raise RewardError(
                    f"the chat template of {self.name!r} does not render turn {k + 1}'s answer "
                    "where the generation prompt ends; use style math-shepherd"
                )
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        positions = tuple(offsets_to_token(offsets, start) - 1 for start in starts)
        return EncodedSolution(tuple(enc["input_ids"]), positions)

    def _rewards(
        self, model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: list[tuple[int, ...]]
    ) -> list[list[float]]:
        torch = engine().torch
        wanted = sorted({p for row in positions for p in row})
        column = {p: j for j, p in enumerate(wanted)}
        keep = torch.tensor(wanted, device=ids.device)
        logits = model_output_logits(model(input_ids=ids, attention_mask=mask, logits_to_keep=keep))
        pair = logits[:, :, [self._good, self._bad]].float()
        probs = torch.softmax(pair, dim=-1)[:, :, 0]
        return [[float(probs[i, column[p]]) for p in row] for i, row in enumerate(positions)]
