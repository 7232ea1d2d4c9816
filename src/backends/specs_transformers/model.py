"""The ``transformers`` backend: a :class:`~specs_core.protocols.LanguageModel` on a causal LM.

Generation runs its own sampling loop over one batch holding every sample of every prompt: each
distinct prompt is evaluated once (reusing the longest cached prefix of an earlier call), its
keys and values are copied into ``n`` left-padded rows, and all rows decode together with the
KV cache; finished rows leave the batch. Stop strings are checked on each row's decoded text.
The reported log-probabilities are the model's untempered ones, so scoring the generated text
returns the same numbers.

Scoring evaluates each distinct prompt once and runs all of its continuations in one forward
pass over the shared prefix cache.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specs_core.backend_kit.chat import Segment, render_segments
from specs_core.backend_kit.ngram import NgramTables, SpeculativeOptions
from specs_core.errors import ConfigError, ContextOverflowError, InvalidInputError
from specs_core.protocols import Capabilities, check_pairs
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

from specs_transformers._engine import engine, model_output_logits
from specs_transformers.kv import PrefixCache, cache_from_layers, evaluate_prefix, expand_entries
from specs_transformers.loading import LoadedModel, load_causal_lm
from specs_transformers.options import TransformersOptions
from specs_transformers.sampling import StopWatcher, choose_tokens, make_generator

if TYPE_CHECKING:
    from specs_transformers.kv import PrefixEntry

__all__ = ["CAPABILITIES", "TransformersModel"]

log = logging.getLogger(__name__)

#: What the backend supports.
CAPABILITIES = Capabilities(
    batched_generation=True,
    prefix_cache=True,
    generation_logprobs=True,
    scoring=True,
    seeded=True,
    concurrent=True,
)

_ANCHOR = "\n"
_DEFAULT_CTX = 4096


def _default_name(options: TransformersOptions) -> str:
    if options.name:
        return options.name
    if options.gguf_file:
        return Path(options.gguf_file).name.removesuffix(".gguf")
    return str(options.model).rstrip("/").split("/")[-1]


@dataclass
class _Row:
    """One sample being generated."""

    prompt: int
    budget: int
    watcher: StopWatcher
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None
    drafted: tuple[int, int, int] = (0, 0, 0)  # proposed, accepted, verification passes


class TransformersModel:
    """A causal LM served by transformers: generation, scoring and a prefix KV cache.

    Weights load on first use. Calls are serialised by a lock, so the model may be shared by
    several threads.

    Args:
        options: where the model comes from and how it runs.
        loaded: an already loaded model and tokenizer (see :meth:`from_objects`).

    Example:
        >>> options = TransformersOptions(gguf_file="smollm2-135m")
        >>> model = TransformersModel(options)  # doctest: +SKIP
        >>> model.generate([Prompt("What is 2 + 3?")], SamplingParams(n=4))  # doctest: +SKIP
    """

    def __init__(self, options: TransformersOptions, *, loaded: LoadedModel | None = None) -> None:
        self.options = options
        self._name = _default_name(options)
        self._lock = threading.RLock()
        self._prefixes = PrefixCache(options.prefix_cache_size)
        self._loaded: LoadedModel | None = None
        self._pending: LoadedModel | None = None
        self._reloadable = loaded is None
        self._eos: frozenset[int] = frozenset()
        self._n_ctx = _DEFAULT_CTX
        self._round_trips = True
        self._system_ok: bool | None = None
        self._anchor_ids: list[int] = []
        self._ngrams = NgramTables(options.speculative) if options.speculative else None
        if loaded is not None:
            self._adopt(loaded)

    @classmethod
    def from_objects(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "in-memory",
        chat_template: str | None = None,
        n_ctx: int | None = None,
        prefix_cache_size: int = 4,
        score_batch_size: int = 8,
        speculative: SpeculativeOptions | None = None,
    ) -> TransformersModel:
        """Wrap a causal LM and tokenizer that are already built (tests, embedding apps).

        Args:
            model: a transformers causal LM (``PreTrainedModel``); it is put in eval mode.
            tokenizer: its tokenizer (with a chat template, or pass ``chat_template``).
            name: the accounting name.
            chat_template: a Jinja chat template replacing the tokenizer's.
            n_ctx: context size in tokens (default: the model's maximum).
            prefix_cache_size: evaluated prefixes kept for reuse.
            score_batch_size: continuations scored per forward pass.
            speculative: n-gram drafting options (default: off).
        """
        device = next(model.parameters()).device
        options = TransformersOptions(
            model=name,
            name=name,
            chat_template=chat_template,
            n_ctx=n_ctx,
            prefix_cache_size=prefix_cache_size,
            score_batch_size=score_batch_size,
            speculative=speculative,
        )
        loaded = LoadedModel(model.eval(), tokenizer, device, f"in-memory model {name!r}")
        return cls(options, loaded=loaded)

    # -- protocol properties ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The accounting name."""
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        """Batched generation, prefix cache, logprobs, scoring, seeds, thread-safe."""
        return CAPABILITIES

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model and tokenizer (loading them on first use)."""
        with self._lock:
            if self._loaded is None:
                if not self._reloadable:
                    raise InvalidInputError(
                        f"model {self._name!r} was built from objects and has been closed; "
                        "build a new one with TransformersModel.from_objects"
                    )
                self._adopt(load_causal_lm(self.options))
            loaded = self._loaded
            if loaded is None:  # _adopt always sets it; this narrows the type
                raise RuntimeError("the model failed to load")
            return loaded

    @property
    def n_ctx(self) -> int:
        """The context size in tokens."""
        _ = self.loaded
        return self._n_ctx

    def _adopt(self, loaded: LoadedModel) -> None:
        model, tokenizer = loaded.model, loaded.tokenizer
        if self.options.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"model {self._name!r} has no chat template: set chat_template in its options"
            )
        eos: set[int] = set()
        config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for value in (config_eos, getattr(tokenizer, "eos_token_id", None)):
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, (list, tuple)):
                eos.update(int(v) for v in value)
        limit = self.options.n_ctx or getattr(model.config, "max_position_embeddings", None)
        self._pending = loaded
        try:
            probe = " a\n\n b"  # does decoding the tokens of a text give the text back?
            self._round_trips = self._decode_plain(self._encode_plain(probe)) == probe
            self._anchor_ids = self._encode_plain(_ANCHOR)
        finally:
            self._pending = None
        self._eos = frozenset(eos)
        self._n_ctx = int(limit) if limit else _DEFAULT_CTX
        self._loaded = loaded

    # -- text <-> tokens --------------------------------------------------------------------

    def _tokenizer(self) -> Any:
        return (self._pending or self.loaded).tokenizer

    def _encode_plain(self, text: str, *, special: bool = True) -> list[int]:
        """Tokens of ``text`` without added BOS/EOS. Special tokens written in it are parsed
        unless ``special`` is off (a user's text: ``<|im_end|>`` typed in a question must not
        end the user's turn)."""
        ids: list[int] = self._tokenizer()(
            text, add_special_tokens=False, split_special_tokens=not special
        )["input_ids"]
        return list(ids)

    def _decode_plain(self, ids: Sequence[int]) -> str:
        text: str = self._tokenizer().decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text

    def _apply_template(self, messages: list[dict[str, str]]) -> str:
        kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
        if self.options.chat_template is not None:
            kwargs["chat_template"] = self.options.chat_template
        return str(self.loaded.tokenizer.apply_chat_template(messages, **kwargs))

    def _takes_system(self) -> bool:
        """Whether the chat template accepts a system message (some raise on one)."""
        if self._system_ok is None:
            probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
            try:
                self._apply_template(probe)
                self._system_ok = True
            except Exception as e:
                log.debug("template of %s rejects a system message (%s)", self._name, e)
                self._system_ok = False
        return self._system_ok

    def _segments(self, prompt: Prompt) -> list[Segment]:
        """The rendered prompt in pieces, the user's marked (``render_segments``); a system
        message is folded into the question when the template rejects one."""
        if prompt.system is not None and not self._takes_system():
            prompt = Prompt(f"{prompt.system}\n\n{prompt.question}", prompt.partial, None)
        try:
            return render_segments(self._apply_template, prompt)
        except Exception as e:
            raise ConfigError(f"the chat template of {self._name!r} failed: {e}") from e

    def render(self, prompt: Prompt) -> str:
        """The prompt as text: the chat template applied to system and question, then the
        partial answer appended to the open assistant message."""
        return "".join(text for text, _ in self._segments(prompt))

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """The tokens of the rendered prompt: special tokens from the template's text only.

        When no user piece holds special-token text, the joined text is encoded in one call,
        exactly as a whole string; otherwise piece by piece."""
        segments = self._segments(prompt)
        if all(
            self._encode_plain(text) == self._encode_plain(text, special=False)
            for text, from_user in segments
            if from_user
        ):
            return self._encode_plain("".join(text for text, _ in segments))
        ids: list[int] = []
        for text, from_user in segments:
            ids += self._encode_plain(text, special=not from_user)
        return ids

    def encode_continuation(self, text: str) -> list[int]:
        """The tokens of ``text`` as a continuation (no special tokens added)."""
        _ = self.loaded
        if self._round_trips or not text:
            return self._encode_plain(text)
        full = self._encode_plain(_ANCHOR + text)
        if full[: len(self._anchor_ids)] == self._anchor_ids:
            return full[len(self._anchor_ids) :]
        return self._encode_plain(text)

    def _decode_generated(self, ids: Sequence[int]) -> str:
        if self._round_trips:
            return self._decode_plain(ids)
        anchor = self._decode_plain(self._anchor_ids)
        return self._decode_plain([*self._anchor_ids, *ids])[len(anchor) :]

    def _check_fits(self, length: int, what: str) -> None:
        if length >= self._n_ctx:
            raise ContextOverflowError(
                f"{what} of {length} tokens does not fit the {self._n_ctx}-token context of "
                f"{self._name!r}: shorten it or raise n_ctx"
            )

    # -- generation -------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times in one batch.

        Text ending with a stop string keeps it (``FinishReason.STOP``); a sequence the model
        ends returns the text before its end-of-sequence token, which is left out of
        ``token_ids`` and ``logprobs`` (``FinishReason.EOS``); otherwise generation stops at
        ``max_tokens`` or at the context end (``FinishReason.LENGTH``).

        Raises:
            ContextOverflowError: a prompt does not fit the context.
        """
        if not prompts:
            return []
        torch = engine().torch
        with self._lock, torch.inference_mode():
            return self._generate(list(prompts), params)

    def _evaluate_prompts(
        self, prompt_ids: list[list[int]]
    ) -> tuple[list[PrefixEntry], list[int], list[int]]:
        """Evaluate each distinct prompt once.

        Returns:
            The evaluated entries, the entry index of each prompt, and its cached token count.
        """
        lm = self.loaded
        index: dict[tuple[int, ...], int] = {}
        entries: list[PrefixEntry] = []
        which: list[int] = []
        cached: list[int] = []
        for ids in prompt_ids:
            key = tuple(ids)
            if key in index:
                which.append(index[key])
                cached.append(len(key))
                continue
            entry, reused = evaluate_prefix(lm.model, key, self._prefixes, lm.device)
            index[key] = len(entries)
            entries.append(entry)
            which.append(index[key])
            cached.append(reused)
        return entries, which, cached

    def _generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        torch = engine().torch
        lm = self.loaded
        prompt_ids = [self.encode_prompt(p) for p in prompts]
        for ids in prompt_ids:
            if not ids:
                raise InvalidInputError("a prompt rendered to no tokens; check the chat template")
            self._check_fits(len(ids), "the prompt")
        entries, which, cached = self._evaluate_prompts(prompt_ids)
        row_entry = [which[p] for p in range(len(prompts)) for _ in range(params.n)]
        rows = [
            _Row(
                prompt=p,
                budget=min(params.max_tokens, self._n_ctx - len(prompt_ids[p])),
                watcher=StopWatcher(params.stop),
            )
            for p in range(len(prompts))
            for _ in range(params.n)
        ]
        cache, mask, logits = expand_entries(entries, row_entry)
        positions = torch.tensor(
            [len(entries[e].ids) for e in row_entry], device=lm.device, dtype=torch.long
        )
        if self._ngrams is not None:
            self._generate_speculative(
                prompts, prompt_ids, rows, (cache, mask, logits, positions), params
            )
            return self._results(prompts, prompt_ids, rows, cached)
        generator = make_generator(lm.device, params.seed)
        active = list(range(len(rows)))
        while True:
            tokens, chosen = choose_tokens(
                logits, temperature=params.temperature, top_p=params.top_p, generator=generator
            )
            keep = self._advance(rows, active, tokens.tolist(), chosen.tolist(), bool(params.stop))
            if not keep:
                break
            if len(keep) < len(active):
                select = torch.tensor(keep, device=lm.device)
                cache.batch_select_indices(select)
                mask, positions, tokens = mask[select], positions[select], tokens[select]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = lm.model(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask,
                position_ids=positions.unsqueeze(-1),
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = model_output_logits(out)[:, -1]
            positions = positions + 1
        return self._results(prompts, prompt_ids, rows, cached)

    def _generate_speculative(
        self,
        prompts: list[Prompt],
        prompt_ids: list[list[int]],
        rows: list[_Row],
        state: tuple[Any, Any, Any, Any],
        params: SamplingParams,
    ) -> None:
        """Run every row to its end with n-gram drafting (see :mod:`.speculation`); each row
        draws from its own generator, seeded by ``(seed, prompt, sample)``."""
        from specs_transformers.speculation import Drafter, speculative_loop

        ngrams = self._ngrams
        if ngrams is None:  # the caller checked; this narrows the type
            raise RuntimeError("speculative generation without n-gram tables")
        sessions = [
            ngrams.session(p.question, ids, params.n)
            for p, ids in zip(prompts, prompt_ids, strict=True)
        ]
        drafters: list[Drafter] = [
            (sessions[row.prompt], i % params.n) for i, row in enumerate(rows)
        ]
        has_stops = bool(params.stop)

        def emit(r: int, token: int, logprob: float) -> bool:
            row = rows[r]
            before = len(row.ids)
            alive = self._emit(row, token, logprob, has_stops)
            if len(row.ids) > before:
                session, index = drafters[r]
                session.extend(index, row.ids[before:])
            return alive

        cache, mask, logits, positions = state
        device = self.loaded.device
        seed = params.seed
        generators = [
            make_generator(
                device, None if seed is None else random.Random(f"{seed}/{i}").getrandbits(62)
            )
            for i in range(len(rows))
        ]
        counts = speculative_loop(
            self.loaded.model,
            cache,
            mask,
            logits,
            positions,
            temperature=params.temperature,
            top_p=params.top_p,
            generators=generators,
            emit=emit,
            rooms=lambda r: rows[r].budget - len(rows[r].ids),
            drafters=drafters,
            pad_id=int(getattr(self.loaded.tokenizer, "pad_token_id", None) or 0),
        )
        for row, count in zip(rows, counts, strict=True):
            row.drafted = (count.proposed, count.accepted, count.rounds)

    def _results(
        self,
        prompts: list[Prompt],
        prompt_ids: list[list[int]],
        rows: list[_Row],
        cached: list[int],
    ) -> list[list[Completion]]:
        results: list[list[Completion]] = [[] for _ in prompts]
        for row in rows:
            proposed, accepted, rounds = row.drafted
            results[row.prompt].append(
                Completion(
                    text=row.text,
                    token_ids=tuple(row.ids),
                    logprobs=tuple(row.logprobs),
                    finish_reason=row.finish or FinishReason.LENGTH,
                    prompt_tokens=len(prompt_ids[row.prompt]),
                    cached_tokens=cached[row.prompt],
                    draft_tokens_proposed=proposed,
                    draft_tokens_accepted=accepted,
                    draft_rounds=rounds,
                )
            )
        return results

    def _advance(
        self,
        rows: list[_Row],
        active: list[int],
        tokens: list[int],
        logprobs: list[float],
        has_stops: bool,
    ) -> list[int]:
        """Append each active row's new token; return the batch positions still running."""
        return [
            position
            for position, row_index in enumerate(active)
            if self._emit(rows[row_index], tokens[position], logprobs[position], has_stops)
        ]

    def _emit(self, row: _Row, token: int, logprob: float, has_stops: bool) -> bool:
        """Append a token to a row; ``False`` once the row is finished."""
        if token in self._eos:
            row.finish = FinishReason.EOS
            row.text = self._decode_generated(row.ids)
            return False
        row.ids.append(token)
        row.logprobs.append(logprob)
        if has_stops:
            text = self._decode_generated(row.ids)
            end = row.watcher.find(text)
            if end is not None:
                row.finish = FinishReason.STOP
                row.text = text[:end]
                return False
        if len(row.ids) >= row.budget:
            row.finish = FinishReason.LENGTH
            row.text = self._decode_generated(row.ids)
            return False
        return True

    # -- scoring ----------------------------------------------------------------------------

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """The log-probability of each continuation token after its prompt.

        Equal prompts are evaluated once (or served from the prefix cache) and their
        continuations run together over the shared keys and values.

        Raises:
            InvalidInputError: ``prompts`` and ``continuations`` differ in length.
            ContextOverflowError: a prompt and its continuation do not fit the context.
        """
        check_pairs(prompts, continuations)
        if not prompts:
            return []
        torch = engine().torch
        with self._lock, torch.inference_mode():
            return self._logprobs(list(prompts), list(continuations))

    def _logprobs(self, prompts: list[Prompt], continuations: list[str]) -> list[TokenLogprobs]:
        prompt_ids = [self.encode_prompt(p) for p in prompts]
        cont_ids = [self.encode_continuation(c) for c in continuations]
        for ids, cont in zip(prompt_ids, cont_ids, strict=True):
            if not ids:
                raise InvalidInputError("a prompt rendered to no tokens; check the chat template")
            self._check_fits(len(ids) + len(cont), "a prompt with its continuation")
        entries, which, cached = self._evaluate_prompts(prompt_ids)
        if self._ngrams is not None:  # scored text feeds the n-gram drafter
            for prompt, ids, cont in zip(prompts, prompt_ids, cont_ids, strict=True):
                self._ngrams.index_text(prompt.question, ids, cont)
        scores: list[list[float]] = [[] for _ in prompts]
        size = self.options.score_batch_size
        for e, entry in enumerate(entries):
            members = [i for i in range(len(prompts)) if which[i] == e and cont_ids[i]]
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                for i, row in zip(
                    chunk, self._score_chunk(entry, [cont_ids[i] for i in chunk]), strict=True
                ):
                    scores[i] = row
        return [
            TokenLogprobs(
                token_ids=tuple(cont_ids[i]),
                logprobs=tuple(scores[i]),
                prompt_tokens=len(prompt_ids[i]),
                cached_tokens=cached[i],
            )
            for i in range(len(prompts))
        ]

    def _score_chunk(self, entry: PrefixEntry, conts: list[list[int]]) -> list[list[float]]:
        """Log-probabilities of continuations of one evaluated prefix, in one forward pass."""
        torch = engine().torch
        lm = self.loaded
        count, longest, start = len(conts), max(len(c) for c in conts), len(entry.ids)
        pad = int(getattr(lm.tokenizer, "pad_token_id", None) or 0)
        ids = torch.full((count, longest), pad, dtype=torch.long, device=lm.device)
        mask = torch.zeros((count, start + longest), dtype=torch.long, device=lm.device)
        mask[:, :start] = 1
        for i, cont in enumerate(conts):
            ids[i, : len(cont)] = torch.tensor(cont, device=lm.device)
            mask[i, start : start + len(cont)] = 1
        past = cache_from_layers(
            [(k.expand(count, -1, -1, -1), v.expand(count, -1, -1, -1)) for k, v in entry.layers]
        )
        out = lm.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=torch.arange(start, start + longest, device=lm.device).expand(count, -1),
            past_key_values=past,
            use_cache=True,
        )
        logits = model_output_logits(out).float()
        first = entry.last_logits.to(logits.device).expand(count, 1, -1)
        predicting = torch.cat([first, logits[:, :-1]], dim=1)
        chosen = predicting.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        logprobs = chosen - torch.logsumexp(predicting, dim=-1)
        return [logprobs[i, : len(c)].tolist() for i, c in enumerate(conts)]

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free the weights and the prefix cache (a later call loads them again)."""
        with self._lock:
            self._prefixes.clear()
            if self._ngrams is not None:
                self._ngrams.clear()
            if self._loaded is None:
                return
            device = self._loaded.device
            self._loaded = None
            gc.collect()
            if device.type == "cuda":
                engine().torch.cuda.empty_cache()

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not loaded"
        return f"TransformersModel({self._name!r}, {state})"
