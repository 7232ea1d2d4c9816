"""The options of the ``llamacpp`` backend, validated by pydantic (pure: no I/O, no engine)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from specs_core.backend_kit.ngram import SpeculativeOptions

__all__ = ["LlamaCppOptions"]


class LlamaCppOptions(BaseModel):
    """Options of the ``llamacpp`` backend.

    Exactly one model source is given: ``model`` (a local ``.gguf`` path,
    ``hf:OWNER/REPO/FILE.gguf`` or an embedded model name such as ``smollm2-135m``), or
    ``hf_repo`` together with ``hf_file``.

    Roles whose load options (the model file, ``n_ctx``, ``n_threads``, ``n_batch``,
    ``n_ubatch``, ``n_seq_max``, ``flash_attn``, ``cache_slots``) are equal share one loaded
    model, even when their other options differ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None,
        description="a .gguf path, 'hf:OWNER/REPO/FILE.gguf', or an embedded model name",
    )
    hf_repo: str | None = Field(default=None, description="Hugging Face repository (OWNER/REPO)")
    hf_file: str | None = Field(default=None, description="GGUF file inside hf_repo")
    name: str | None = Field(
        default=None, description="display and accounting name (default: derived from the source)"
    )
    n_ctx: int = Field(
        default=4096,
        ge=64,
        le=2**24,
        description="context size in tokens (all sequences); at most the model's training context",
    )
    n_threads: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="CPU threads (default: os.cpu_count(); at most 4 per core)",
    )
    n_batch: int = Field(default=512, ge=1, description="most tokens submitted per decode call")
    n_ubatch: int = Field(
        default=32,
        ge=1,
        description=(
            "tokens computed together inside llama.cpp; at 32 a text scores the same whether "
            "evaluated at once, in pieces or token by token (with flash attention); larger "
            "values evaluate long prompts a little faster"
        ),
    )
    n_seq_max: int = Field(
        default=16, ge=1, le=256, description="most sequences decoded together (samples per batch)"
    )
    cache_slots: int = Field(
        default=2,
        ge=1,
        le=8,
        description=(
            "llama.cpp contexts on the loaded weights, each caching its own prompt prefix, so "
            "that callers with unrelated prompts (a generator and an LLM judge on one model) do "
            "not evict each other's cache; each costs one KV cache of n_ctx tokens"
        ),
    )
    flash_attn: bool = Field(
        default=True,
        description="use flash attention (makes batched and single-token decoding agree exactly)",
    )
    seed: int | None = Field(
        default=None, description="seed used when a call gives none (None: unseeded)"
    )
    chat_template: str | None = Field(
        default=None, description="a Jinja chat template replacing the one in the GGUF metadata"
    )
    verbose: bool = Field(default=False, description="let llama.cpp print its own logs")
    speculative: SpeculativeOptions | None = Field(
        default=None,
        description="token-level speculative decoding, e.g. {method: ngram, max_draft: 4} "
        "(default: off)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LlamaCppOptions:
        has_hf = self.hf_repo is not None or self.hf_file is not None
        if self.model is not None and has_hf:
            raise ValueError("give either 'model' or 'hf_repo' + 'hf_file', not both")
        if self.model is None and not has_hf:
            raise ValueError(
                "no model given: set 'model' to a .gguf path, 'hf:OWNER/REPO/FILE.gguf' or an "
                "embedded model name (see 'specs models list')"
            )
        if has_hf and (not self.hf_repo or not self.hf_file):
            raise ValueError("'hf_repo' and 'hf_file' must be given together")
        if self.model is not None and not self.model.strip():
            raise ValueError("'model' is empty")
        return self

    @property
    def source(self) -> str:
        """The model source as one string (``hf:`` form for hub sources)."""
        if self.model is not None:
            return self.model
        return f"hf:{self.hf_repo}/{self.hf_file}"
