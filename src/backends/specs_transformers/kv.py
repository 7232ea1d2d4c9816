"""Key/value caches: evaluated prompt prefixes kept for reuse, and batches built from them.

A :class:`PrefixEntry` holds the per-layer keys and values of one evaluated token sequence
(batch size 1) and the logits at its last position. :class:`PrefixCache` keeps the most recently
used entries; :func:`evaluate_prefix` evaluates a new sequence from the longest cached common
prefix, so a prompt that extends an earlier one (the next step of a search) only runs its new
tokens. :func:`expand_entries` builds a left-padded batched cache from entries, one row per
sample, which is how ``n`` candidates of one prompt share a single prefill.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specs_transformers._engine import engine

if TYPE_CHECKING:
    import torch

__all__ = [
    "PrefixCache",
    "PrefixEntry",
    "cache_from_layers",
    "common_prefix_length",
    "evaluate_prefix",
    "expand_entries",
    "layers_of",
]

Layers = list[tuple["torch.Tensor", "torch.Tensor"]]


@dataclass(frozen=True)
class PrefixEntry:
    """One evaluated token sequence.

    Attributes:
        ids: the tokens.
        layers: per layer, keys and values shaped ``[1, kv_heads, len(ids), head_dim]``.
        last_logits: the next-token logits after the last token, ``[vocab]`` float32.
    """

    ids: tuple[int, ...]
    layers: Layers
    last_logits: torch.Tensor


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """The most recently used evaluated prefixes (least recently used dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], PrefixEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, ids: Sequence[int]) -> tuple[PrefixEntry | None, int]:
        """The entry sharing the longest common prefix with ``ids``, and that length."""
        best: PrefixEntry | None = None
        best_len = 0
        with self._lock:
            for entry in self._entries.values():
                length = common_prefix_length(entry.ids, ids)
                if length > best_len:
                    best, best_len = entry, length
            if best is not None:
                self._entries.move_to_end(best.ids)
        return best, best_len

    def put(self, entry: PrefixEntry) -> None:
        """Keep ``entry``; entries it extends are dropped (it serves all their uses)."""
        if self.capacity <= 0:
            return
        with self._lock:
            for key in [k for k in self._entries if entry.ids[: len(k)] == k]:
                del self._entries[key]
            self._entries[entry.ids] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()


def layers_of(cache: Any) -> Layers:
    """The per-layer ``(keys, values)`` of a transformers ``DynamicCache``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_from_layers(layers: Layers | None) -> Any:
    """A ``DynamicCache`` holding ``layers`` (an empty one for ``None``)."""
    cache_cls = engine().transformers.DynamicCache
    if not layers:
        return cache_cls()
    return cache_cls(ddp_cache_data=[(k, v) for k, v in layers])


def evaluate_prefix(
    model: Any,
    ids: Sequence[int],
    cache: PrefixCache,
    device: torch.device,
    *,
    chunk: int = 512,
) -> tuple[PrefixEntry, int]:
    """Evaluate ``ids``, reusing the longest cached common prefix.

    Args:
        model: the causal LM.
        ids: the tokens (at least one).
        cache: where prefixes are looked up and the result is stored.
        device: the model's device.
        chunk: the most tokens evaluated per forward pass.

    Returns:
        ``(entry, reused)``: the evaluated sequence and how many of its tokens were reused.
    """
    torch = engine().torch
    ids = tuple(ids)
    found, shared = cache.longest(ids)
    if found is not None and shared == len(ids) == len(found.ids):
        return found, len(ids)
    reused = min(shared, len(ids) - 1) if found is not None else 0
    past = cache_from_layers(
        [(k[:, :, :reused], v[:, :, :reused]) for k, v in found.layers]
        if found is not None and reused > 0
        else None
    )
    logits = None
    for start in range(reused, len(ids), chunk):
        piece = ids[start : start + chunk]
        out = model(
            input_ids=torch.tensor([piece], device=device),
            position_ids=torch.arange(start, start + len(piece), device=device).unsqueeze(0),
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
        )
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    if logits is None:  # unreachable: at least one token is always evaluated
        raise RuntimeError("no token was evaluated")
    entry = PrefixEntry(ids, layers_of(past), logits)
    cache.put(entry)
    return entry, reused


def expand_entries(
    entries: Sequence[PrefixEntry], rows: Sequence[int]
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """A left-padded batched cache with one row per element of ``rows``.

    Args:
        entries: the distinct evaluated prompts.
        rows: for each batch row, the index of its entry.

    Returns:
        ``(cache, attention_mask, next_logits)``: the ``DynamicCache`` (``[len(rows), heads,
        longest, head_dim]`` per layer, zeros on the left of shorter prompts), the ``[rows,
        longest]`` mask (0 on padding), and the ``[rows, vocab]`` next-token logits.
    """
    torch = engine().torch
    longest = max(len(e.ids) for e in entries)
    index = torch.tensor(list(rows), device=entries[0].last_logits.device)
    layers = []
    for layer in range(len(entries[0].layers)):
        padded_k, padded_v = [], []
        for entry in entries:
            k, v = entry.layers[layer]
            pad = longest - k.shape[2]
            if pad:
                zeros = k.new_zeros((1, k.shape[1], pad, k.shape[3]))
                k = torch.cat([zeros, k], dim=2)
                v = torch.cat([zeros.new_zeros((1, v.shape[1], pad, v.shape[3])), v], dim=2)
            padded_k.append(k)
            padded_v.append(v)
        keys = torch.cat(padded_k).index_select(0, index.to(padded_k[0].device))
        values = torch.cat(padded_v).index_select(0, index.to(padded_v[0].device))
        layers.append((keys, values))
    mask = torch.zeros((len(rows), longest), dtype=torch.long, device=index.device)
    for row, which in enumerate(rows):
        mask[row, longest - len(entries[which].ids) :] = 1
    logits = torch.stack([e.last_logits for e in entries]).index_select(0, index)
    return cache_from_layers(layers), mask, logits
