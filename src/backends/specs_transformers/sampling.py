"""Token choice and stop strings for the generation loop.

:func:`choose_tokens` picks the next token of every row of a batch (greedy at temperature 0,
else temperature and nucleus sampling from a seeded ``torch.Generator``) and returns the
model's untempered log-probability of each choice. :class:`StopWatcher` follows one sequence's
decoded text and says where the first stop string ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from specs_transformers._engine import engine

if TYPE_CHECKING:
    import torch

__all__ = ["StopWatcher", "choose_tokens", "make_generator"]


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator on ``device``, seeded with ``seed`` (or from fresh entropy when ``None``)."""
    torch = engine().torch
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def choose_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose one token per row.

    Args:
        logits: ``[batch, vocab]`` raw next-token logits.
        temperature: 0 for greedy decoding.
        top_p: nucleus mass in (0, 1].
        generator: the random source.

    Returns:
        ``(tokens, logprobs)``: the chosen ids ``[batch]`` and their log-probabilities under the
        untempered distribution ``log_softmax(logits)`` ``[batch]``, as float32.
    """
    torch = engine().torch
    logits = logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            before = sorted_probs.cumsum(dim=-1) - sorted_probs
            sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    chosen = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens, chosen


@dataclass
class StopWatcher:
    """Finds the first stop string in a growing text.

    Only the part of the text that could hold a new match is searched after each token (the
    tail, with room for a stop string spanning tokens and for a multi-byte character completed
    late).
    """

    stops: Sequence[str]
    _checked: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str) -> int | None:
        """The end (exclusive) of the stop string completed first in ``text``, or ``None``."""
        if not self.stops:
            return None
        start = max(0, self._checked - self._longest - 4)
        best: int | None = None
        for stop in self.stops:
            at = text.find(stop, start)
            if at >= 0 and (best is None or at + len(stop) < best):
                best = at + len(stop)
        self._checked = len(text)
        return best
