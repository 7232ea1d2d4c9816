"""Options of the ``transformers`` backend and of the trained-PRM reward models.

Pure pydantic models: validation does no I/O and imports no engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from specs_core.backend_kit.ngram import SpeculativeOptions

__all__ = [
    "DEVICE_PATTERN",
    "ClassificationPRMOptions",
    "LoadOptions",
    "PRMOptions",
    "TokenPRMOptions",
    "TransformersOptions",
    "ValuePRMOptions",
]

#: Accepted ``device`` values.
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class LoadOptions(BaseModel):
    """Where a model comes from and where it runs (shared by the backend and the PRMs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None,
        description="a local model directory or a Hugging Face repo id (OWNER/NAME)",
    )
    revision: str | None = Field(
        default=None, description="hub revision (branch, tag or commit) of a repo id"
    )
    trust_remote_code: bool = Field(
        default=False, description="allow modeling code shipped inside the repository"
    )
    local_files_only: bool = Field(
        default=False, description="never reach the hub; use only local files and the hub cache"
    )
    dtype: Dtype = Field(
        default="auto", description="weights dtype (auto: float32 on CPU, bfloat16 on CUDA)"
    )
    device: str = Field(
        default="auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps"
    )
    name: str | None = Field(
        default=None, description="display and accounting name (default: from the source)"
    )
    n_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads, process-wide (default: torch's)"
    )


class TransformersOptions(LoadOptions):
    """Options of the ``transformers`` backend.

    Give ``model`` (a directory or repo id) or ``gguf_file``, or both: with both, ``gguf_file`` is
    the file name inside the directory or repository; alone, it is a ``.gguf`` path, an embedded
    model name (``smollm2-135m``) or ``hf:OWNER/REPO/FILE.gguf``.
    """

    gguf_file: str | None = Field(
        default=None,
        description="a GGUF file to load (dequantized by transformers; needs gguf and accelerate)",
    )
    tokenizer: str | None = Field(
        default=None, description="a separate tokenizer directory or repo id (default: the model's)"
    )
    chat_template: str | None = Field(
        default=None, description="a Jinja chat template replacing the tokenizer's"
    )
    n_ctx: int | None = Field(
        default=None, ge=16, description="context size in tokens (default: the model's maximum)"
    )
    prefix_cache_size: int = Field(
        default=4, ge=0, le=64, description="evaluated prompt prefixes kept for reuse (0: none)"
    )
    score_batch_size: int = Field(
        default=8, ge=1, description="continuations scored together in one forward pass"
    )
    gguf_cache: bool = Field(
        default=True, description="save a converted GGUF model once and load the copy next time"
    )
    cache_dir: str | None = Field(
        default=None,
        description="where converted GGUF models go (default $SPECS_CACHE_DIR/transformers or "
        "~/.cache/specs/transformers)",
    )
    speculative: SpeculativeOptions | None = Field(
        default=None,
        description="token-level speculative decoding, e.g. {method: ngram, max_draft: 4} "
        "(default: off)",
    )

    @model_validator(mode="after")
    def _has_source(self) -> TransformersOptions:
        if not (self.model or self.gguf_file):
            raise ValueError(
                "no model given: set 'model' to a local directory or a repo id, or 'gguf_file' to "
                "a .gguf path, an embedded model name or hf:OWNER/REPO/FILE.gguf"
            )
        return self


class PRMOptions(LoadOptions):
    """Options shared by the trained-PRM adapters."""

    batch_size: int = Field(default=4, ge=1, description="solutions scored per forward pass")
    max_length: int | None = Field(
        default=None, ge=16, description="longest input in tokens (default: the model's maximum)"
    )

    @model_validator(mode="after")
    def _has_model(self) -> PRMOptions:
        if not self.model:
            raise ValueError("no model given: set 'model' to a local directory or a repo id")
        return self


class ClassificationPRMOptions(PRMOptions):
    """A PRM with a 2-class head read at a separator token after each step (Qwen2.5-Math-PRM)."""

    model: str | None = "Qwen/Qwen2.5-Math-PRM-7B"
    step_separator: str = Field(
        default="<extra_0>", description="the token placed after every step"
    )
    system_prompt: str | None = Field(
        default="Please reason step by step, and put your final answer within \\boxed{}.",
        description="the system message of the chat rendering (None: no system message)",
    )
    positive_label: int = Field(default=1, ge=0, description="the class index meaning 'correct'")


class ValuePRMOptions(PRMOptions):
    """A PRM with a scalar value head, sigmoid at each step's end (Skywork-o1-Open-PRM)."""

    model: str | None = "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B"
    step_token: str = Field(default="\n", description="the token appended after every step")
    question_suffix: str = Field(
        default="\n", description="text between the question and the first step"
    )


class TokenPRMOptions(PRMOptions):
    """A causal LM judging each step by P(good token) against P(bad token) at a step tag.

    ``style`` picks the input layout: ``math-shepherd`` writes the solution as plain text with a
    tag after every step and reads the tag's position; ``chat-turns`` (RLHFlow) writes each step
    as a user turn answered by an assistant turn holding the good token, and reads the position
    that predicts it.
    """

    model: str | None = "peiyi9979/math-shepherd-mistral-7b-prm"
    style: Literal["math-shepherd", "chat-turns"] = "math-shepherd"
    good_token: str = Field(default="+", description="the token meaning 'correct step'")
    bad_token: str = Field(default="-", description="the token meaning 'wrong step'")
    step_tag: str = Field(default="ки", description="math-shepherd: the tag after every step")
    step_template: str = Field(
        default="Step {index}: {step} {tag}",
        description="math-shepherd: how a step is written ({index} from 1, {step}, {tag})",
    )
    step_joiner: str = Field(default="\n", description="math-shepherd: text between steps")
    question_joiner: str = Field(
        default=" ", description="text between the question and the first step"
    )
    good_token_id: int | None = Field(
        default=None, ge=0, description="the good token's id (default: from the tokenizer)"
    )
    bad_token_id: int | None = Field(
        default=None, ge=0, description="the bad token's id (default: from the tokenizer)"
    )

    @field_validator("step_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        for needed in ("{step}", "{tag}"):
            if value.count(needed) != 1:
                raise ValueError(f"step_template must contain {needed} exactly once, got {value!r}")
        try:
            value.format(index=1, step="", tag="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"step_template may only use {{index}}, {{step}} and {{tag}}: {value!r} ({e})"
            ) from e
        return value
