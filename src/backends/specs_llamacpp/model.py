"""``LlamaCppModel``: the :class:`~specs_core.protocols.LanguageModel` of the llama.cpp backend.

Sharing and locking: loaded models live in a module-level table keyed by the resolved GGUF path
and the load options (``n_ctx``, ``n_threads``, ``n_batch``, ``n_ubatch``, ``n_seq_max``,
``flash_attn``, ``cache_slots``). Every ``LlamaCppModel`` naming the same file with the same load
options (a draft and a judge reward model on the target, say) holds a reference to one
:class:`SharedModel`; the last ``close()`` frees it. Each shared model has one
:class:`threading.Lock`, held by every ``generate`` and ``logprobs`` call, so any number of threads
may call it; calls run one at a time. A call runs in the context of the shared model's
:class:`~specs_llamacpp.runtime.ContextPool` that holds the most of its prompt, so callers with
unrelated prompts (a generator and a judge) keep their cached prefixes.

``llama_cpp`` and ``numpy`` are imported on first use only: this module imports without them and
raises :class:`~specs_core.errors.BackendUnavailableError` naming the ``llamacpp`` extra when used.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from specs_core.backend_kit.artifacts import EMBEDDED_MODELS, file_sha256, resolve_model_path
from specs_core.backend_kit.chat import ChatTemplate
from specs_core.backend_kit.ngram import NgramTables
from specs_core.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    SpecsError,
)
from specs_core.protocols import Capabilities, ContinueIf, Verification, check_pairs
from specs_core.types import Completion, Prompt, SamplingParams, TokenLogprobs

from specs_llamacpp.options import LlamaCppOptions

if TYPE_CHECKING:
    from specs_llamacpp.runtime import ContextPool, HiddenStates, LlamaRuntime, LoadOptions

__all__ = [
    "CAPABILITIES",
    "LlamaCppModel",
    "SharedModel",
    "engine_unavailable_reason",
    "loaded_model_count",
]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    batched_generation=True,
    prefix_cache=True,
    generation_logprobs=True,
    scoring=True,
    seeded=True,
    concurrent=True,
    reproducible_interleaved=False,
)


#: llama.cpp's OpenMP worker threads spin while they wait. When the cores are shared with other
#: busy processes that spinning made two-thread decoding up to 100x slower on a 2-core machine;
#: passive waiting avoids it. Set OMP_WAIT_POLICY yourself (e.g. ACTIVE) to override.
OMP_WAIT_POLICY_DEFAULT = "PASSIVE"


def engine_unavailable_reason() -> str | None:
    """``None`` when llama-cpp-python can be used, else why not.

    Sets ``OMP_WAIT_POLICY`` (unless already set) before the engine's library is first loaded.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY_DEFAULT)
    try:
        import llama_cpp  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        return f"llama-cpp-python is not installed ({e})"
    except OSError as e:  # the package is there but its shared library cannot be loaded
        return f"llama-cpp-python cannot load its library ({e})"
    return None


def _engine() -> None:
    """Import the engine or raise :class:`BackendUnavailableError`."""
    reason = engine_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError("llamacpp", "llamacpp", reason)


@dataclass
class SharedModel:
    """A loaded model shared by every ``LlamaCppModel`` with the same file and load options."""

    key: LoadOptions
    pool: ContextPool
    lock: threading.Lock = field(default_factory=threading.Lock)
    refs: int = 0
    hidden: HiddenStates | None = None

    @property
    def runtime(self) -> LlamaRuntime:
        """The first context: the owner of the weights (metadata, tokenizing)."""
        return self.pool.first


_loaded: dict[LoadOptions, SharedModel] = {}
_loaded_lock = threading.Lock()


def loaded_model_count() -> int:
    """How many distinct models are loaded in this process."""
    with _loaded_lock:
        return len(_loaded)


def _acquire(key: LoadOptions, verbose: bool) -> SharedModel:
    with _loaded_lock:
        shared = _loaded.get(key)
        if shared is None:
            from specs_llamacpp.runtime import ContextPool, LlamaRuntime

            path, n_ctx, n_threads, n_batch, n_ubatch, n_seq_max, flash_attn, slots = key
            log.info("loading %s (n_ctx=%d, n_seq_max=%d)", path, n_ctx, n_seq_max)
            runtime = LlamaRuntime(
                Path(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=n_batch,
                n_ubatch=n_ubatch,
                n_seq_max=n_seq_max,
                flash_attn=flash_attn,
                verbose=verbose,
            )
            shared = _loaded[key] = SharedModel(key, ContextPool(runtime, slots))
        shared.refs += 1
        return shared


def _release(shared: SharedModel) -> None:
    with _loaded_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        _loaded.pop(shared.key, None)
    with shared.lock:  # let a call in flight finish before freeing
        if shared.hidden is not None:
            shared.hidden.close()
        shared.pool.close()


def _default_name(source: str) -> str:
    if source in EMBEDDED_MODELS or source.startswith("hf:"):
        return source
    return Path(source).name.removesuffix(".gguf")


class LlamaCppModel:
    """A GGUF model run by llama.cpp. Cheap to build: the file loads on first use.

    Args:
        options: the validated backend options.

    Example:
        >>> from specs_core.types import Prompt, SamplingParams
        >>> model = LlamaCppModel(LlamaCppOptions(model="smollm2-135m"))
        >>> out = model.generate([Prompt("What is 2+3?")], SamplingParams(n=2, max_tokens=8))
        >>> model.close()
    """

    def __init__(self, options: LlamaCppOptions) -> None:
        self.options = options
        self._name = options.name or _default_name(options.source)
        self._shared: SharedModel | None = None
        self._template: ChatTemplate | None = None
        self._state_lock = threading.Lock()
        self._closed = False
        self._ngrams = NgramTables(options.speculative) if options.speculative else None

    @property
    def name(self) -> str:
        """The model's display and accounting name."""
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        """Everything: batched generation, prefix cache, logprobs, scoring, seeds, threads."""
        return CAPABILITIES

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> SharedModel:
        with self._state_lock:
            if self._closed:
                raise InvalidInputError(f"model {self.name!r} is closed; build a new one")
            if self._shared is None:
                _engine()
                path = resolve_model_path(self.options.source)
                opts = self.options
                key: LoadOptions = (
                    str(path),
                    opts.n_ctx,
                    opts.n_threads or os.cpu_count() or 1,
                    opts.n_batch,
                    opts.n_ubatch,
                    opts.n_seq_max,
                    opts.flash_attn,
                    opts.cache_slots,
                )
                self._shared = _acquire(key, opts.verbose)
            return self._shared

    @property
    def runtime(self) -> LlamaRuntime:
        """The loaded llama.cpp model (loads it); shared with every equal ``LlamaCppModel``."""
        return self._load().runtime

    def reset_cache(self) -> None:
        """Forget every cached prompt: the next call evaluates its prompt in full."""
        shared = self._load()
        with shared.lock:
            shared.pool.reset()

    def chat_template(self) -> ChatTemplate:
        """The chat template in use: the ``chat_template`` option or the GGUF's own."""
        runtime = self.runtime
        with self._state_lock:
            if self._template is None:
                source, origin = self.options.chat_template, "the chat_template option"
                if source is None:
                    source, origin = runtime.chat_template(), f"the metadata of {runtime.path.name}"
                if source is None:
                    raise ConfigError(
                        f"model {self.name!r} has no chat template in its GGUF metadata; pass "
                        "one as the chat_template option"
                    )
                self._template = ChatTemplate(
                    source,
                    bos_token=runtime.special_text("bos"),
                    eos_token=runtime.special_text("eos"),
                    origin=origin,
                )
            return self._template

    def render(self, prompt: Prompt) -> str:
        """The text this model continues for ``prompt`` (chat template + open partial answer)."""
        return self.chat_template().render(prompt)

    def _tokens(self, runtime: LlamaRuntime, prompt: Prompt, continuation: str = "") -> list[int]:
        """The tokens of ``prompt`` (and a continuation of its partial answer): control tokens
        come from the chat template only, never from the question or a step's text."""
        segments = self.chat_template().segments(prompt)
        if continuation:
            if segments and segments[-1][1]:  # the partial answer: one text with its sequel
                segments[-1] = (segments[-1][0] + continuation, True)
            else:
                segments.append((continuation, True))
        return runtime.tokenize_segments(segments)

    @property
    def tokenizer_id(self) -> str:
        """A fingerprint of the vocabulary: equal for models that tokenize text alike."""
        shared = self._load()
        with shared.lock:
            return shared.runtime.tokenizer_id()

    # -- the protocol -------------------------------------------------------------------------

    def _seed(self, params: SamplingParams) -> int:
        if params.seed is not None:
            return params.seed
        if self.options.seed is not None:
            return self.options.seed
        return secrets.randbits(63)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times; the ``n`` samples are decoded in one batch.

        Raises:
            ContextOverflowError: a prompt plus ``max_tokens`` exceeds ``n_ctx``.
            InvalidInputError: a prompt is not a :class:`Prompt`.
        """
        shared = self._load()  # first: it sets up the engine's environment before importing it
        from specs_llamacpp.generation import check_generation_fits, generate_samples

        seed = self._seed(params)
        with shared.lock:
            tokenized = [self._tokens(shared.runtime, p) for p in prompts]
            for tokens in tokenized:
                check_generation_fits(len(tokens), params, shared.runtime.n_ctx, self.name)
            rt = shared.pool.pick(tokenized[0] if tokenized else [])
            try:
                if self._ngrams is not None:
                    from specs_llamacpp.speculation import generate_speculative

                    ngrams = self._ngrams
                    return [
                        generate_speculative(
                            rt,
                            tokens,
                            params,
                            seed,
                            i,
                            ngrams.session(prompt.question, tokens, params.n),
                        )
                        for i, (prompt, tokens) in enumerate(zip(prompts, tokenized, strict=True))
                    ]
                return [
                    generate_samples(rt, tokens, params, seed, i)
                    for i, tokens in enumerate(tokenized)
                ]
            except SpecsError:
                raise
            except Exception:
                rt.reset()  # the cache state is unknown after a failure
                raise

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """Log-probability of each continuation token after its prompt (untempered).

        Equal prompts are grouped so their prefix is evaluated once; the cache also carries over
        from the previous call when the new text extends what it holds.

        Raises:
            InvalidInputError: the two lists differ in length.
            ContextOverflowError: a prompt plus its continuation exceeds ``n_ctx``.
        """
        shared = self._load()
        from specs_llamacpp.generation import score_continuations

        check_pairs(prompts, continuations)
        groups: dict[Prompt, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(i)
        results: list[TokenLogprobs | None] = [None] * len(prompts)
        with shared.lock:
            rt0 = shared.runtime
            work = [
                (
                    self._tokens(rt0, prompt),
                    indices,
                    [self._tokens(rt0, prompt, continuations[i]) for i in indices],
                )
                for prompt, indices in groups.items()
            ]
            rt = shared.pool.pick(work[0][0] if work else [])
            try:
                for prefix_tokens, indices, fulls in work:
                    for i, scored in zip(
                        indices, score_continuations(rt, prefix_tokens, fulls), strict=True
                    ):
                        results[i] = scored
                        if self._ngrams is not None:  # scored text feeds the n-gram drafter
                            self._ngrams.index_text(
                                prompts[i].question, prefix_tokens, scored.token_ids
                            )
            except SpecsError:
                raise
            except Exception:
                rt.reset()
                raise
        return [r for r in results if r is not None]

    @property
    def weights_sha256(self) -> str:
        """The sha256 of the GGUF file (an embedded model's is verified when it is prepared;
        another file is hashed once per process)."""
        embedded = EMBEDDED_MODELS.get(self.options.source)
        if embedded is not None:
            return embedded.sha256
        return file_sha256(self.runtime.path)

    def hidden_states(self, prompts: Sequence[Prompt]) -> list[list[float]]:
        """The final hidden state at the last token of each rendered prompt.

        Prompts whose tokens extend one another (the prefixes of a solution) are read from one
        pass over the longest.

        Raises:
            ContextOverflowError: a prompt is longer than ``n_ctx``.
        """
        shared = self._load()
        from specs_llamacpp.runtime import HiddenStates

        with shared.lock:
            tokenized = [self._tokens(shared.runtime, p) for p in prompts]
            if shared.hidden is None:
                shared.hidden = HiddenStates(shared.runtime)
            reader = shared.hidden
            out: list[list[float] | None] = [None] * len(prompts)
            for i in sorted(range(len(prompts)), key=lambda k: -len(tokenized[k])):
                if out[i] is not None:
                    continue
                longest = tokenized[i]
                group = [
                    k
                    for k in range(len(prompts))
                    if out[k] is None and longest[: len(tokenized[k])] == tokenized[k]
                ]
                rows = reader.last_states(longest, [len(tokenized[k]) - 1 for k in group])
                for k, row in zip(group, rows, strict=True):
                    out[k] = row.tolist()
        return [row for row in out if row is not None]

    def verify_proposals(
        self,
        prompt: Prompt,
        proposals: Sequence[Sequence[int]],
        params: SamplingParams,
        continue_if: ContinueIf,
    ) -> Verification:
        """Score proposed tokens in one batch and, if ``continue_if`` agrees, continue them.

        See :class:`~specs_core.protocols.ProposalVerifier`. When the ``n`` samples do not fit
        in one batch (``n_seq_max``, ``n_ctx``), the proposals are scored one by one and the
        continuations generated from scratch (the same samples, without the saving).

        Raises:
            InvalidInputError: not one proposal per sample, or a proposal longer than
                ``max_tokens``.
            ContextOverflowError: the prompt plus ``max_tokens`` exceeds ``n_ctx``.
        """
        shared = self._load()
        from specs_llamacpp import speculation
        from specs_llamacpp.generation import (
            check_generation_fits,
            generate_samples,
            score_continuations,
        )

        if len(proposals) != params.n:
            raise InvalidInputError(
                f"got {len(proposals)} proposals for n={params.n} samples; pass one per sample"
            )
        if any(len(p) > params.max_tokens for p in proposals):
            raise InvalidInputError(
                f"a proposal is longer than max_tokens={params.max_tokens}; cut it or raise "
                "max_tokens"
            )
        seed = self._seed(params)
        with shared.lock:
            tokens = self._tokens(shared.runtime, prompt)
            check_generation_fits(len(tokens), params, shared.runtime.n_ctx, self.name)
            rt = shared.pool.pick(tokens)
            session = None
            if self._ngrams is not None:
                for p in proposals:
                    self._ngrams.index_text(prompt.question, tokens, p)
                session = self._ngrams.session(prompt.question, tokens, params.n)
            try:
                if speculation.group_size(len(tokens), params, rt) >= params.n:
                    return speculation.verify_proposals(
                        rt, tokens, proposals, params, seed, continue_if, session
                    )
                log.info("%s: %d proposals do not fit in one batch; no reuse", self.name, params.n)
                began = time.perf_counter()
                scores = score_continuations(rt, tokens, [[*tokens, *p] for p in proposals])
                scored = time.perf_counter()
                if not continue_if(scores):
                    return Verification(scores, [0] * params.n, None, (began, scored))
                if session is not None:
                    out = speculation.generate_speculative(rt, tokens, params, seed, 0, session)
                else:
                    out = generate_samples(rt, tokens, params, seed, 0)
                return Verification(
                    scores, [0] * params.n, out, (began, scored), (scored, time.perf_counter())
                )
            except SpecsError:
                raise
            except Exception:
                rt.reset()
                raise

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release this model's reference; the last reference frees the weights."""
        with self._state_lock:
            self._closed = True
            shared, self._shared = self._shared, None
        if shared is not None:
            _release(shared)

    def __enter__(self) -> LlamaCppModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LlamaCppModel(name={self.name!r}, source={self.options.source!r})"
