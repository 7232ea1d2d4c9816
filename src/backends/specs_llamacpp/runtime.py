"""One loaded GGUF model and its llama.cpp context, driven through the low-level C API.

The context is created with ``n_seq_max`` sequences and a unified KV cache, so sequences forked
from a prompt share its cells (``llama_memory_seq_cp`` adds a sequence id to the cells instead of
copying them). Sequence 0 is the "home" sequence: it holds the tokens of the last prompt or scored
text, and :meth:`LlamaRuntime.evaluate` reuses the longest common token prefix with it, trimming the
rest (``llama_memory_seq_rm``) before evaluating only what is new. Other sequences live only for
the duration of one generation group. :meth:`LlamaRuntime.sibling` opens another context on the
same weights (loaded once), with a cache of its own.

Nothing here is thread-safe: the owner holds one lock around every call (see ``model.py``).
This module imports ``llama_cpp`` and ``numpy`` at import time; import it lazily.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import llama_cpp
import llama_cpp._logger
import numpy as np
import numpy.typing as npt
from specs_core.errors import BackendError, ConfigError, ContextOverflowError

__all__ = ["ContextPool", "LlamaRuntime", "LoadOptions", "common_prefix"]

log = logging.getLogger(__name__)

#: (path, n_ctx, n_threads, n_batch, n_ubatch, n_seq_max, flash_attn, cache_slots): what makes a
#: loaded model distinct.
LoadOptions = tuple[str, int, int, int, int, int, bool, int]

#: A context's cache is reused for a prompt when it holds at least this share of its tokens.
_MIN_REUSE_SHARE = 0.5

_backend_ready = False
_backend_lock = threading.Lock()

#: Most tokens per decode call that request logits (bounds the logits buffer: rows x vocab floats).
_MAX_LOGIT_ROWS = 128


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


#: More threads than this many per CPU core only slow llama.cpp down (its workers spin), and
#: tens of thousands crash or hang it.
THREADS_PER_CORE = 4


def _check_threads(n_threads: int) -> None:
    cores = os.cpu_count() or 1
    if n_threads > THREADS_PER_CORE * cores:
        raise ConfigError(
            f"n_threads {n_threads} is more than {THREADS_PER_CORE}x the {cores} CPU cores of "
            f"this machine; leave n_threads unset (it then uses {cores})"
        )


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux), else ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_context(model: llama_cpp.llama_model_p, path: Path, n_ctx: int, n_seq_max: int) -> None:
    """Refuse a context that no use of the model needs (more than its training context for
    each of ``n_seq_max`` sequences: the cells are shared by all sequences) or that memory
    cannot hold."""
    trained = int(llama_cpp.llama_model_n_ctx_train(model))
    if trained > 0 and n_ctx > trained * n_seq_max:
        raise ConfigError(
            f"n_ctx {n_ctx} is more than {n_seq_max} sequences (n_seq_max) of the {trained} "
            f"tokens {path.name} was trained on; set n_ctx to at most {trained * n_seq_max}"
        )
    heads = max(1, int(llama_cpp.llama_model_n_head(model)))
    kv_width = int(llama_cpp.llama_model_n_embd(model)) // heads
    kv_width *= int(llama_cpp.llama_model_n_head_kv(model))
    # keys and values, 2 bytes each (f16), every layer, every cell
    kv_bytes = n_ctx * int(llama_cpp.llama_model_n_layer(model)) * kv_width * 2 * 2
    available = _available_memory()
    if available is not None and kv_bytes > available:
        raise ConfigError(
            f"a KV cache of n_ctx {n_ctx} for {path.name} needs {kv_bytes / 2**30:.1f} GiB, more "
            f"than the {available / 2**30:.1f} GiB of memory available; lower n_ctx"
        )


class LlamaRuntime:
    """A GGUF model, its context, one reusable batch and the token list of sequence 0.

    Args:
        path: the GGUF file.
        n_ctx: context cells shared by all sequences.
        n_threads: CPU threads for decoding and prompt evaluation.
        n_batch: most tokens per decode call.
        n_ubatch: most tokens computed together inside llama.cpp (a decode call is split).
        n_seq_max: most sequences alive at once.
        flash_attn: enable flash attention.
        verbose: let llama.cpp print its logs.
        weights: a runtime whose loaded weights this one borrows instead of loading ``path``
            (see :meth:`sibling`).

    Raises:
        BackendError: llama.cpp cannot load the file or create the context.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_batch: int,
        n_ubatch: int,
        n_seq_max: int,
        flash_attn: bool = False,
        verbose: bool = False,
        weights: LlamaRuntime | None = None,
    ) -> None:
        _init_backend()
        _check_threads(n_threads)
        llama_cpp._logger.set_verbose(verbose)
        self.path = path
        self._options = (n_threads, n_ubatch, flash_attn, verbose)  # the rest is read back below
        self._owns_model = weights is None
        self._model: llama_cpp.llama_model_p | None = (
            weights._model
            if weights is not None
            else llama_cpp.llama_model_load_from_file(
                str(path).encode("utf-8"), llama_cpp.llama_model_default_params()
            )
        )
        if not self._model:
            raise BackendError(
                f"llama.cpp could not load {str(path)!r}; check that it is a GGUF file of a "
                "supported architecture (set verbose: true to see llama.cpp's own message)"
            )
        try:
            _check_context(self._model, path, n_ctx, n_seq_max)
        except ConfigError:
            if self._owns_model:
                llama_cpp.llama_model_free(self._model)
            self._model = None
            raise
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, n_ubatch)
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            if self._owns_model:
                llama_cpp.llama_model_free(self._model)
            self._model = None
            raise BackendError(
                f"llama.cpp could not create a context of {n_ctx} tokens x {n_seq_max} sequences "
                f"for {str(path)!r}; lower n_ctx or n_seq_max"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(self._ctx))
        self.n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(max(n_batch, self.n_seq_max), 0, 1)
        self._seq0: list[int] = []
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._tokenizer_id: str | None = None

    def sibling(self) -> LlamaRuntime:
        """Another context on these weights (not loaded again), with its own cache and batch.

        The weights stay owned by this runtime: close the sibling first.
        """
        n_threads, n_ubatch, flash_attn, verbose = self._options
        return LlamaRuntime(
            self.path,
            n_ctx=self.n_ctx,
            n_threads=n_threads,
            n_batch=self.n_batch,
            n_ubatch=n_ubatch,
            n_seq_max=self.n_seq_max,
            flash_attn=flash_attn,
            verbose=verbose,
            weights=self,
        )

    # -- metadata and tokens -----------------------------------------------------------------

    def chat_template(self) -> str | None:
        """The chat template stored in the GGUF metadata, if any."""
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def special_text(self, which: str) -> str:
        """The text of the ``"bos"`` or ``"eos"`` token ("" when the model has none)."""
        token = (llama_cpp.llama_vocab_bos if which == "bos" else llama_cpp.llama_vocab_eos)(
            self._vocab
        )
        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    def tokenize(self, text: str, *, special: bool = True, first: bool = True) -> list[int]:
        """Tokens of ``text``, BOS added when the model wants one.

        Args:
            text: the text.
            special: parse special tokens written in the text (``<|im_end|>`` becomes one
                control token); off for text from a user or a model, which must stay text.
            first: the text starts the sequence. BOS is added only then, when the vocabulary
                asks for it and the text does not already start with it (chat templates often
                render it themselves).
        """
        data = text.encode("utf-8")
        add_bos = first and bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        if add_bos and self.special_text("bos") and text.startswith(self.special_text("bos")):
            add_bos = False
        size = len(data) + 8
        buf = (llama_cpp.llama_token * size)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, special)
        if count < 0:
            size = -count
            buf = (llama_cpp.llama_token * size)()
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, size, add_bos, special
            )
            if count < 0:
                raise BackendError(f"llama.cpp failed to tokenize a text of {len(data)} bytes")
        return list(buf[:count])

    def tokenize_segments(self, segments: Sequence[tuple[str, bool]]) -> list[int]:
        """Tokens of a rendered prompt in pieces (``(text, from_user)``): special tokens are
        parsed in the template's pieces only, so a user's ``<|im_end|>`` stays text.

        When no user piece holds special-token text, the joined text is tokenized in one call,
        exactly as a whole string (pieces tokenized apart could split differently where they
        meet); otherwise piece by piece.
        """
        if all(
            self.tokenize(text, first=False) == self.tokenize(text, special=False, first=False)
            for text, from_user in segments
            if from_user
        ):
            return self.tokenize("".join(text for text, _ in segments))
        tokens: list[int] = []
        for text, from_user in segments:
            tokens += self.tokenize(text, special=not from_user, first=not tokens)
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes a token adds to the text (control tokens add none)."""
        cached = self._pieces.get(token)
        if cached is None:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece_buf, 256, 0, False)
            if n < 0:
                big = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, big, -n, 0, False)
                cached = big.raw[:n]
            else:
                cached = self._piece_buf.raw[:n]
            self._pieces[token] = cached
        return cached

    def is_end(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ``<|im_end|>``...)."""
        flag = self._eog.get(token)
        if flag is None:
            flag = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
        return flag

    # -- decoding -----------------------------------------------------------------------------

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants_logits) entries in one llama_decode call."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, wants) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = wants
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code == 1:
            self.reset()
            raise ContextOverflowError(
                f"the KV cache of {self.n_ctx} cells is full; raise n_ctx or ask for fewer or "
                "shorter samples"
            )
        if code != 0:
            self.reset()
            raise BackendError(f"llama_decode failed with code {code}")

    def _row(self, index: int) -> npt.NDArray[np.float32]:
        """The logits of the ``index``-th batch entry (a view valid until the next decode)."""
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def evaluate(
        self,
        tokens: Sequence[int],
        logits_from: int,
        on_logits: Callable[[int, npt.NDArray[np.float32]], None] | None = None,
    ) -> int:
        """Make sequence 0 hold ``tokens``, reusing the common prefix already in the cache.

        Args:
            tokens: the full token list sequence 0 must hold.
            logits_from: the first position whose logits are needed (``len(tokens)`` for none).
            on_logits: called with ``(position, logits_row)`` for every position from
                ``logits_from`` on; the row is a view valid only during the call.

        Returns:
            How many leading tokens were reused from the cache instead of evaluated.
        """
        if len(tokens) > self.n_ctx:
            raise ContextOverflowError(
                f"{len(tokens)} tokens do not fit in the context of {self.n_ctx} tokens; raise "
                "n_ctx or shorten the text"
            )
        llama_cpp.llama_memory_seq_keep(self._memory, 0)
        reuse = min(common_prefix(self._seq0, tokens), logits_from)
        if not llama_cpp.llama_memory_seq_rm(self._memory, 0, reuse, -1):
            llama_cpp.llama_memory_clear(self._memory, True)  # models that cannot trim (recurrent)
            reuse = 0
        self._seq0 = list(tokens[:reuse])
        pos = reuse
        while pos < len(tokens):
            rows = 0
            entries: list[tuple[int, int, int, bool]] = []
            while pos < len(tokens) and len(entries) < self.n_batch:
                wants = pos >= logits_from
                if wants and rows == _MAX_LOGIT_ROWS:
                    break
                rows += wants
                entries.append((tokens[pos], pos, 0, wants))
                pos += 1
            self._decode(entries)
            self._seq0.extend(t for t, _, _, _ in entries)
            if on_logits is not None:
                for i, (_, p, _, wants) in enumerate(entries):
                    if wants:
                        on_logits(p, self._row(i))
        return reuse

    def fork(self, count: int) -> None:
        """Share sequence 0 with sequences 1..count-1 (dropping every other sequence first)."""
        llama_cpp.llama_memory_seq_keep(self._memory, 0)
        for seq in range(1, count):
            llama_cpp.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)

    def trim(self, length: int) -> None:
        """Cut sequence 0 back to its first ``length`` tokens and drop every other sequence."""
        llama_cpp.llama_memory_seq_keep(self._memory, 0)
        if not llama_cpp.llama_memory_seq_rm(self._memory, 0, length, -1):
            self.reset()
            raise BackendError("this model's cache cannot be trimmed; it is not supported")
        del self._seq0[length:]

    def step(self, entries: Sequence[tuple[int, int, int]]) -> list[npt.NDArray[np.float32]]:
        """Decode one (token, position, sequence) per live sequence; return their logits rows.

        The rows are views valid until the next decode call.
        """
        self._decode([(token, pos, seq, True) for token, pos, seq in entries])
        for token, pos, seq in entries:
            if seq == 0 and pos == len(self._seq0):
                self._seq0.append(token)
        return [self._row(i) for i in range(len(entries))]

    def decode_rows(
        self,
        entries: Sequence[tuple[int, int, int]],
        on_row: Callable[[int, npt.NDArray[np.float32]], None],
    ) -> None:
        """Decode (token, position, sequence) entries, each with logits, in as few calls as fit.

        ``on_row(i, row)`` is called with the logits of entry ``i``, in entry order, right after
        the decode call holding it (the row is a view valid only during the call). A sequence's
        entries must come in position order, after the cells it already holds.
        """
        limit = max(1, min(self.n_batch, _MAX_LOGIT_ROWS))
        for start in range(0, len(entries), limit):
            chunk = entries[start : start + limit]
            self._decode([(token, pos, seq, True) for token, pos, seq in chunk])
            for token, pos, seq in chunk:
                if seq == 0 and pos == len(self._seq0):
                    self._seq0.append(token)
            for i in range(len(chunk)):
                on_row(start + i, self._row(i))

    def remove_from(self, seq: int, pos: int) -> None:
        """Drop the cells of sequence ``seq`` at positions ``pos`` and later."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, seq, pos, -1):
            self.reset()
            raise BackendError("this model's cache cannot be trimmed; it is not supported")
        if seq == 0:
            del self._seq0[pos:]

    def park(self, seq: int, pos: int, keeper: int) -> int:
        """Move the cells of ``seq`` at positions ``pos`` and later to sequence ``keeper``.

        The cells leave ``seq`` but stay allocated, so later tokens are not placed in the holes:
        llama.cpp's attention sums over cells in cache order, and refilled holes would change
        the order, and so the rounding, of other sequences' results. Returns how many cells
        were moved.
        """
        held = int(llama_cpp.llama_memory_seq_pos_max(self._memory, seq)) + 1
        if held <= pos:
            return 0
        llama_cpp.llama_memory_seq_cp(self._memory, seq, keeper, pos, -1)
        self.remove_from(seq, pos)
        return held - pos

    def tokenizer_id(self) -> str:
        """A fingerprint of the vocabulary (every token's text and end-of-generation flag)."""
        if self._tokenizer_id is None:
            digest = hashlib.sha256(str(self.n_vocab).encode("ascii"))
            for token in range(self.n_vocab):
                text = llama_cpp.llama_vocab_get_text(self._vocab, token) or b""
                digest.update(len(text).to_bytes(4, "little") + text)
                digest.update(b"\x01" if self.is_end(token) else b"\x00")
            self._tokenizer_id = f"llama-vocab-{digest.hexdigest()[:32]}"
        return self._tokenizer_id

    def reset(self) -> None:
        """Forget every cached sequence (after an error the cache state is not trusted)."""
        llama_cpp.llama_memory_clear(self._memory, True)
        self._seq0 = []

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens sequence 0 holds now."""
        return tuple(self._seq0)

    def close(self) -> None:
        """Free the batch, the context and the owned model. Calling it twice is harmless."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            if self._owns_model:
                llama_cpp.llama_model_free(self._model)
            self._model = None


class HiddenStates:
    """A context on a runtime's weights that returns the final hidden states of tokens
    (llama.cpp's embeddings with no pooling: the output of the last norm, before the LM head).

    Args:
        runtime: the runtime whose weights it borrows (close this first).
    """

    def __init__(self, runtime: LlamaRuntime) -> None:
        n_threads, n_ubatch, _, _ = runtime._options
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = runtime.n_ctx
        params.n_batch = runtime.n_ctx
        params.n_ubatch = min(runtime.n_ctx, n_ubatch)
        params.n_seq_max = 1
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
        params.no_perf = True
        self.n_ctx = runtime.n_ctx
        self.n_embd = int(llama_cpp.llama_model_n_embd(runtime._model))
        self._ctx = llama_cpp.llama_init_from_model(runtime._model, params)
        if not self._ctx:
            raise BackendError(
                f"llama.cpp could not create an embeddings context for {str(runtime.path)!r}"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_ctx, 0, 1)

    def last_states(self, tokens: Sequence[int], ends: Sequence[int]) -> npt.NDArray[np.float32]:
        """The hidden states at the positions ``ends`` of one sequence, one row each.

        Raises:
            ContextOverflowError: the sequence is longer than the context.
        """
        if len(tokens) > self.n_ctx:
            raise ContextOverflowError(
                f"{len(tokens)} tokens do not fit the context of {self.n_ctx}; raise n_ctx"
            )
        llama_cpp.llama_memory_clear(self._memory, True)
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True  # embedding mode outputs every token anyway
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise BackendError(f"llama_decode failed with code {code} reading hidden states")
        rows = np.empty((len(ends), self.n_embd), dtype=np.float32)
        for k, end in enumerate(ends):
            ptr = llama_cpp.llama_get_embeddings_ith(self._ctx, end)
            if not ptr:
                raise BackendError(f"llama.cpp returned no hidden state for position {end}")
            rows[k] = np.ctypeslib.as_array(ptr, shape=(self.n_embd,))
        return rows

    def close(self) -> None:
        """Free the batch and the context. Calling it twice is harmless."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None


class ContextPool:
    """Up to ``size`` contexts on one model's weights, each with its own prompt cache.

    Callers of one model that send unrelated prompts in turn (a generator and an LLM judge on
    the same weights) would otherwise evict each other's cached prefix at every call. A prompt
    goes to the context holding the longest prefix of it, when that covers at least half of its
    tokens; otherwise to an empty context, a new one while fewer than ``size`` are open, or else
    the least recently used (whose cache it replaces). Contexts open on first need.

    Args:
        first: the runtime that owns the weights (used first; closed last).
        size: most contexts, ``first`` included.
    """

    def __init__(self, first: LlamaRuntime, size: int) -> None:
        if size < 1:
            raise ValueError(f"a context pool needs at least 1 context, got {size}")
        self.first = first
        self.size = size
        self._contexts = [first]
        self._last_used = [0]
        self._clock = 0

    @property
    def contexts(self) -> tuple[LlamaRuntime, ...]:
        """The contexts opened so far, ``first`` first."""
        return tuple(self._contexts)

    def pick(self, tokens: Sequence[int]) -> LlamaRuntime:
        """The context that should evaluate a prompt of ``tokens`` (see the class docstring)."""
        reuse = [common_prefix(rt.cached_tokens, tokens) for rt in self._contexts]
        best = max(range(len(reuse)), key=lambda i: (reuse[i], self._last_used[i]))
        if not reuse[best] or reuse[best] < _MIN_REUSE_SHARE * len(tokens):
            empty = [i for i, rt in enumerate(self._contexts) if not rt.cached_tokens]
            if empty:
                best = empty[0]
            elif len(self._contexts) < self.size:
                self._contexts.append(self.first.sibling())
                self._last_used.append(0)
                best = len(self._contexts) - 1
            else:
                best = min(range(len(reuse)), key=self._last_used.__getitem__)
        self._clock += 1
        self._last_used[best] = self._clock
        return self._contexts[best]

    def reset(self) -> None:
        """Forget every context's cache."""
        for rt in self._contexts:
            rt.reset()

    def close(self) -> None:
        """Close every context, the owner of the weights last."""
        for rt in reversed(self._contexts):
            rt.close()
