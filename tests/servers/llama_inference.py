"""Real llama.cpp inference for the protocol test double in ``fake_sglang_server.py``.

One model, one sequence in the KV cache. Every request evaluates its tokens from scratch (the
``n`` samples of one request share their prompt's evaluation): llama.cpp's logits depend on how
many tokens one decode call evaluates (one-token decode and batched prefill of SmolLM2 Q4_1
differ by up to 0.1 nats, 0.02 on average), so reusing a cached prefix across requests would make
answers depend on request history. Evaluating from scratch keeps them reproducible, as SGLang's
``--enable-deterministic-inference`` does; ``cached_tokens`` is therefore reported as 0.
Log-probabilities are computed with the low-level API from the logits of every needed position
(never with llama-cpp-python's ``echo``, whose prompt log-probabilities are shifted by one).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

__all__ = ["Generated", "LlamaInference", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of a row of logits (float64)."""
    x = logits.astype(np.float64)
    top = x.max()
    return x - (top + np.log(np.exp(x - top).sum()))


@dataclass
class Generated:
    """One sampled continuation."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[float, int]]] = field(default_factory=list)
    text: str = ""
    finish: dict[str, object] = field(default_factory=dict)


class LlamaInference:
    """A llama.cpp model with KV prefix reuse, exact log-probabilities and seeded sampling.

    Args:
        model_path: a GGUF file.
        n_ctx: the context window.
        original_logprobs: report untempered generation log-probabilities (SGLang's
            ``SGLANG_RETURN_ORIGINAL_LOGPROB=1``); otherwise they follow the temperature, as
            SGLang's default does.
    """

    def __init__(self, model_path: str, n_ctx: int = 2048, original_logprobs: bool = False) -> None:
        self.llm = llama_cpp.Llama(
            model_path=model_path,
            n_ctx=n_ctx,
            n_batch=512,
            n_threads=2,
            n_threads_batch=2,
            logits_all=False,
            verbose=False,
        )
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_batch = 512
        self.original_logprobs = original_logprobs
        self.n_vocab = self.llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._memory = llama_cpp.llama_get_memory(self.llm.ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._cached: list[int] = []
        self.lock = threading.Lock()

    # -- tokens -------------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Token ids of ``text`` (special tokens in the text are parsed as such)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def detokenize(self, ids: list[int], prev: list[int] | None = None) -> str:
        """Text of ``ids`` following ``prev`` (incomplete UTF-8 at the end is dropped)."""
        return self.llm.detokenize(ids, prev_tokens=prev).decode("utf-8", errors="ignore")

    def piece(self, token: int, prev: list[int]) -> str:
        """The text of one token after ``prev``."""
        return self.llm.detokenize([token], prev_tokens=prev).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """The token ends generation (EOS, EOT...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- evaluation ---------------------------------------------------------------------------

    def _decode(self, tokens: list[int], start: int, want: set[int]) -> dict[int, np.ndarray]:
        """Append ``tokens`` at positions ``start..``; logits rows for positions in ``want``."""
        rows: dict[int, np.ndarray] = {}
        batch = self._batch
        for lo in range(0, len(tokens), self.n_batch):
            part = tokens[lo : lo + self.n_batch]
            batch.n_tokens = len(part)
            flagged: list[tuple[int, int]] = []
            for i, token in enumerate(part):
                pos = start + lo + i
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = pos in want
                if pos in want:
                    flagged.append((i, pos))
            code = llama_cpp.llama_decode(self.llm.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            for i, pos in flagged:
                ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, i)
                view = np.ctypeslib.as_array(
                    ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
                )
                rows[pos] = view.copy()
        self._cached.extend(tokens)
        return rows

    def prefill(self, ids: list[int], need_from: int) -> tuple[dict[int, np.ndarray], int]:
        """Evaluate ``ids`` from scratch; logits of positions ``need_from..end``.

        Returns:
            The logits rows by position, and how many tokens were served from a cache (0).
        """
        if not ids:
            raise ValueError("cannot evaluate an empty token list")
        if len(ids) > self.n_ctx:
            raise ValueError(f"{len(ids)} tokens exceed the context window of {self.n_ctx}")
        need_from = min(max(need_from, 0), len(ids) - 1)
        self.truncate(0)
        want = set(range(need_from, len(ids)))
        return self._decode(ids, 0, want), 0

    def truncate(self, length: int) -> None:
        """Drop cached tokens past ``length``."""
        llama_cpp.llama_memory_seq_rm(self._memory, 0, length, -1)
        del self._cached[length:]

    def step(self, token: int) -> np.ndarray:
        """Append one token; the logits that follow it."""
        pos = len(self._cached)
        if pos >= self.n_ctx:
            raise ValueError("the context window is full")
        return self._decode([token], pos, {pos})[pos]

    # -- sampling -----------------------------------------------------------------------------

    @staticmethod
    def _choose(
        logits: np.ndarray, temperature: float, top_p: float, top_k: int, rng: np.random.Generator
    ) -> int:
        if temperature < 1e-6 or top_k == 1:
            return int(np.argmax(logits))
        scaled = log_softmax(logits / temperature)
        order = np.argsort(-scaled)
        if top_k > 0:
            order = order[:top_k]
        probs = np.exp(scaled[order])
        if top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
            order, probs = order[:keep], probs[:keep]
        return int(rng.choice(order, p=probs / probs.sum()))

    def generate(
        self,
        prompt: list[int],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        stop: list[str] | None = None,
        seeds: list[int | None],
        keep_stop: bool = True,
        top_logprobs: int = 0,
    ) -> tuple[list[Generated], int]:
        """Sample ``len(seeds)`` continuations of ``prompt`` (the prompt is evaluated once).

        Returns:
            The continuations and the prompt tokens served from the cache.
        """
        rows, cached = self.prefill(prompt, len(prompt) - 1)
        first = rows[len(prompt) - 1]
        results = []
        for seed in seeds:
            self.truncate(len(prompt))
            rng = np.random.default_rng(seed)
            out = Generated(finish={"type": "length", "length": max_new_tokens})
            logits = first
            while len(out.token_ids) < max_new_tokens:
                token = self._choose(logits, temperature, top_p, top_k, rng)
                untempered = self.original_logprobs or temperature < 1e-6
                logp = log_softmax(logits if untempered else logits / temperature)
                out.token_ids.append(token)
                out.logprobs.append(float(logp[token]))
                if top_logprobs:
                    best = np.argsort(-logp)[:top_logprobs]
                    out.top.append([(float(logp[i]), int(i)) for i in best])
                if self.is_eog(token):
                    out.finish = {"type": "stop", "matched": token}
                    break
                text = self.detokenize(out.token_ids, prompt)
                hit = _first_stop(text, stop or [])
                if hit is not None:
                    at, matched = hit
                    out.text = text[: at + len(matched)] if keep_stop else text[:at]
                    out.finish = {"type": "stop", "matched": matched}
                    break
                if len(out.token_ids) < max_new_tokens:
                    logits = self.step(token)
            if not out.text:
                body = [t for t in out.token_ids if not self.is_eog(t)]
                out.text = self.detokenize(body, prompt)
            results.append(out)
        return results, cached

    def input_logprobs(
        self, ids: list[int], start: int, top_logprobs: int = 0
    ) -> tuple[list[float | None], list[list[tuple[float, int]]], int]:
        """Log-probability of every token of ``ids`` from index ``start`` (None for index 0).

        Returns:
            The log-probabilities, the top alternatives per position, and the cached count.
        """
        rows, cached = self.prefill(ids, max(start - 1, 0))
        values: list[float | None] = []
        tops: list[list[tuple[float, int]]] = []
        for i in range(start, len(ids)):
            if i == 0:
                values.append(None)
                tops.append([])
                continue
            logp = log_softmax(rows[i - 1])
            values.append(float(logp[ids[i]]))
            best = np.argsort(-logp)[:top_logprobs] if top_logprobs else []
            tops.append([(float(logp[j]), int(j)) for j in best])
        return values, tops, cached

    def next_token_logprobs(self, ids: list[int]) -> tuple[np.ndarray, int]:
        """Log-probabilities of the token after ``ids``, and the cached count."""
        rows, cached = self.prefill(ids, len(ids) - 1)
        return log_softmax(rows[len(ids) - 1]), cached


def _first_stop(text: str, stops: list[str]) -> tuple[int, str] | None:
    hits = [(text.find(s), s) for s in stops if s and s in text]
    return min(hits) if hits else None
