"""Token sampling from raw logits with numpy, and the log-probabilities recorded with each token.

The recorded log-probability of a token is always taken from the UNTEMPERED distribution
(``log_softmax(logits)``), computed by :func:`token_logprob` for generation and scoring alike, so
that scoring a generated text reproduces the numbers recorded while generating it.

Sampling: temperature 0 is greedy (``argmax``); otherwise ``softmax(logits / temperature)``
restricted to the nucleus (the smallest set of most likely tokens whose probability reaches
``top_p``), drawn with the sequence's own seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["log_softmax_rows", "sample_token", "sequence_rngs", "token_logprob"]

FloatArray = npt.NDArray[np.floating]

#: Tokens looked at first when cutting the nucleus; a full sort happens only when they hold too
#: little probability mass.
_NUCLEUS_WINDOW = 1024


def _logsumexp(logits: FloatArray) -> float:
    peak = float(np.max(logits))
    return peak + float(np.log(np.sum(np.exp(logits - peak), dtype=np.float64)))


def token_logprob(logits: FloatArray, token: int) -> float:
    """``log_softmax(logits)[token]``, accumulated in float64."""
    return float(logits[token]) - _logsumexp(logits)


def log_softmax_rows(logits: FloatArray, tokens: npt.NDArray[np.integer]) -> list[float]:
    """``log_softmax(logits[i])[tokens[i]]`` for each row ``i`` (same arithmetic as one row)."""
    return [token_logprob(logits[i], int(tokens[i])) for i in range(len(tokens))]


def _nucleus(probs: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.intp]:
    """Indices of the smallest set of most probable tokens whose mass reaches ``top_p``."""
    target = top_p * float(probs.sum())
    window = min(_NUCLEUS_WINDOW, probs.size)
    candidates = np.argpartition(-probs, window - 1)[:window]
    order = candidates[np.argsort(-probs[candidates], kind="stable")]
    mass = np.cumsum(probs[order])
    if mass[-1] < target and window < probs.size:
        order = np.argsort(-probs, kind="stable")
        mass = np.cumsum(probs[order])
    cut = int(np.searchsorted(mass, target, side="left")) + 1
    return order[: min(cut, order.size)]


def sample_token(
    logits: FloatArray, *, temperature: float, top_p: float, rng: np.random.Generator
) -> tuple[int, float]:
    """Draw one token and return it with its untempered log-probability.

    Args:
        logits: one row of raw logits (not modified).
        temperature: 0 for greedy decoding.
        top_p: nucleus mass in (0, 1].
        rng: the sequence's random generator (unused when greedy).
    """
    lse = _logsumexp(logits)
    if temperature == 0:
        token = int(np.argmax(logits))
        return token, float(logits[token]) - lse
    scaled = (logits.astype(np.float64) - float(np.max(logits))) / temperature
    probs = np.exp(scaled)
    if top_p < 1.0:
        keep = _nucleus(probs, top_p)
        cumulative = np.cumsum(probs[keep])
        pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        token = int(keep[min(pick, keep.size - 1)])
    else:
        cumulative = np.cumsum(probs)
        pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        token = min(pick, probs.size - 1)
    return token, float(logits[token]) - lse


def sequence_rngs(seed: int, prompt_index: int, count: int) -> list[np.random.Generator]:
    """One independent generator per sample, keyed by ``(seed, prompt_index, sample_index)``.

    Keying each sample separately makes its draws independent of how samples are batched together.
    """
    key = seed % 2**64
    return [np.random.default_rng([key, prompt_index, j]) for j in range(count)]
