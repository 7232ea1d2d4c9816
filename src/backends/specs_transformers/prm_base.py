"""What every trained process reward model shares: loading, batching and step alignment.

An adapter turns ``(question, steps)`` into token ids and the positions where each step's reward
is read (:meth:`TrainedPRM.encode`); the base runs solutions in right-padded batches sorted by
length and checks that every solution gets exactly one reward per step.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from specs_core.errors import ContextOverflowError, InvalidInputError, RewardError

from specs_transformers._engine import engine, resolve_device, resolve_dtype, set_threads
from specs_transformers.loading import describe_source, load_pretrained, resolve_source
from specs_transformers.options import PRMOptions

if TYPE_CHECKING:
    import torch

__all__ = ["EncodedSolution", "TrainedPRM", "offsets_to_token"]

log = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT", bound=PRMOptions)


@dataclass(frozen=True)
class EncodedSolution:
    """A solution as the reward model reads it.

    Attributes:
        ids: the input tokens.
        positions: for each step, the index in ``ids`` whose output holds its reward.
    """

    ids: tuple[int, ...]
    positions: tuple[int, ...]


class TrainedPRM(Generic[OptionsT]):
    """Base of the trained-PRM adapters.

    Args:
        options: where the model comes from and the adapter's settings.
        model: an already built model (tests, embedding apps); loaded from ``options`` if omitted.
        tokenizer: its tokenizer (required with ``model``).
    """

    #: What the adapter is, for messages.
    kind: ClassVar[str] = "reward model"

    def __init__(self, options: OptionsT, *, model: Any = None, tokenizer: Any = None) -> None:
        if (model is None) != (tokenizer is None):
            raise InvalidInputError("pass both model and tokenizer, or neither")
        self.options = options
        self._name = options.name or str(options.model).rstrip("/").split("/")[-1]
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: torch.device | None = None
        self._reloadable = model is None
        if model is not None:
            self._adopt(model, tokenizer)

    # -- loading ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The display name."""
        return self._name

    def _adopt(self, model: Any, tokenizer: Any) -> None:
        self._device = next(model.parameters()).device
        self._model = model.eval() if hasattr(model, "eval") else model
        self._tokenizer = tokenizer
        self._prepare()

    def _prepare(self) -> None:
        """Resolve token ids and other tokenizer-dependent settings (after loading)."""

    def _load_model(self, source: Any, dtype: torch.dtype) -> Any:
        """Load the adapter's model from ``source`` (a :class:`ModelSource`)."""
        raise NotImplementedError

    def _ensure_loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                if not self._reloadable:
                    raise InvalidInputError(
                        f"{self.kind} {self._name!r} was built from objects and has been closed"
                    )
                tf = engine().transformers
                set_threads(self.options.n_threads)
                device = resolve_device(self.options.device)
                dtype = resolve_dtype(self.options.dtype, device)
                source = resolve_source(str(self.options.model), self.options.revision)
                log.info("loading %s from %s", self.kind, describe_source(source))
                model = self._load_model(source, dtype)
                tokenizer = load_pretrained(
                    tf.AutoTokenizer.from_pretrained,
                    source,
                    "tokenizer",
                    trust_remote_code=self.options.trust_remote_code,
                    local_files_only=self.options.local_files_only,
                )
                self._adopt(model.to(device), tokenizer)
            return self._model, self._tokenizer

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loading the model on first use)."""
        return self._ensure_loaded()[1]

    # -- encoding and scoring ---------------------------------------------------------------

    def encode(self, question: str, steps: Sequence[str]) -> EncodedSolution:
        """The input ids of one solution and the position of each step's reward."""
        raise NotImplementedError

    def _rewards(
        self, model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: list[tuple[int, ...]]
    ) -> list[list[float]]:
        """Run one padded batch and read the reward at each position of each row."""
        raise NotImplementedError

    def _max_length(self, model: Any) -> int | None:
        if self.options.max_length is not None:
            return int(self.options.max_length)
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        return int(limit) if limit else None

    def _pad_id(self) -> int:
        tok = self._tokenizer
        for value in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
            if isinstance(value, int):
                return value
        return 0

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One reward in [0, 1] per step of each solution (steps given without delimiters).

        Raises:
            ContextOverflowError: a solution is longer than the model's context.
            RewardError: the model produced a reward count different from the step count.
        """
        if not solutions:
            return []
        torch = engine().torch
        with self._lock, torch.inference_mode():
            model, _ = self._ensure_loaded()
            encoded = [self.encode(question, list(steps)) if steps else None for steps in solutions]
            limit = self._max_length(model)
            for enc in encoded:
                if enc is not None and limit is not None and len(enc.ids) > limit:
                    raise ContextOverflowError(
                        f"a solution of {len(enc.ids)} tokens exceeds the {limit}-token limit of "
                        f"{self.kind} {self._name!r}: use fewer or shorter steps or set max_length"
                    )
            results: list[list[float]] = [[] for _ in solutions]
            present = {i: e for i, e in enumerate(encoded) if e is not None}
            todo = sorted(present, key=lambda i: len(present[i].ids))
            size = self.options.batch_size
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                rows = [present[i] for i in batch]
                for i, rewards in zip(batch, self._run_batch(model, rows), strict=True):
                    results[i] = rewards
            for steps, rewards in zip(solutions, results, strict=True):
                if len(rewards) != len(steps):
                    raise RewardError(
                        f"{self.kind} {self._name!r} produced {len(rewards)} rewards for "
                        f"{len(steps)} steps; the step separator is probably split or merged "
                        "by the tokenizer"
                    )
            return results

    def _run_batch(self, model: Any, present: list[EncodedSolution]) -> list[list[float]]:
        torch = engine().torch
        longest = max(len(r.ids) for r in present)
        ids = torch.full(
            (len(present), longest), self._pad_id(), dtype=torch.long, device=self._device
        )
        mask = torch.zeros((len(present), longest), dtype=torch.long, device=self._device)
        for i, row in enumerate(present):
            ids[i, : len(row.ids)] = torch.tensor(row.ids, device=self._device)
            mask[i, : len(row.ids)] = 1
        rewards = self._rewards(model, ids, mask, [r.positions for r in present])
        return [[float(x) for x in row] for row in rewards]

    def close(self) -> None:
        """Free the weights (a later call loads them again). Calling it twice is harmless."""
        with self._lock:
            if self._model is None:
                return
            device = self._device
            self._model = self._tokenizer = None
            gc.collect()
            if device is not None and device.type == "cuda":
                engine().torch.cuda.empty_cache()

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"{type(self).__name__}({self._name!r}, {state})"


def offsets_to_token(offsets: Sequence[tuple[int, int]], char: int) -> int:
    """The index of the token whose character span contains ``char``.

    Raises:
        RewardError: no token covers it (the tokenizer gives no offsets for it).
    """
    for index, (start, end) in enumerate(offsets):
        if start <= char < end:
            return index
    raise RewardError(f"no token covers character {char}; the tokenizer must give offsets")
