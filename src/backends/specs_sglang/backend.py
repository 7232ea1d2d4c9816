"""The ``sglang`` backend: a model served by SGLang, spoken to in SGLang's native protocol.

Generation is one batched ``POST /generate`` per chunk of prompts (``text`` list, ``n``, stop
strings kept with ``no_stop_trim``, temperature, top-p, ``sampling_seed``, ``return_logprob``).
Scoring is prefill only (``max_new_tokens: 0``, ``return_logprob``, ``logprob_start_len``), so
the server's radix cache evaluates a prefix shared by many candidates once.

Token-exact scoring. A continuation is scored as the model would have generated it: the prefix is
tokenized as ``/generate`` tokenizes a prompt (special tokens added), the continuation on its own
(no special tokens), and the concatenated ``input_ids`` are prefilled; the continuation's
log-probabilities are the last ``len(continuation_ids)`` entries of ``input_token_logprobs``,
whose token ids are checked against the ids sent. ``logprob_start_len`` is the prefix length minus
one, which covers both conventions SGLang releases have used for that field and still lets the
radix cache serve all but one prefix token. The token ids come from the server's
``/v1/tokenize`` (or ``/tokenize``) endpoint; servers without one (``prefill`` mode) give them
through a prefill with ``logprob_start_len: 0``, whose ``input_token_logprobs`` name every prompt
token (it also warms the cache with the prefix). Tokenizing prefix and continuation together
would not do: a prefix ending in ``"\n\n"`` followed by a word is split ``"\n", "\n"`` by
byte-level BPE tokenizers, unlike the ``"\n\n"`` token the model saw when it generated.

Generation log-probabilities. The contract wants the untempered log-probabilities that scoring
the same text returns. SGLang reports them after temperature scaling unless the server runs with
``SGLANG_RETURN_ORIGINAL_LOGPROB=1`` (declare it with ``original_logprobs: true``), and even then
its one-token decode kernels differ numerically from its prefill kernels (by ~1e-2 nats on the
llama.cpp test double). By default (``rescore_generation: always``) the backend therefore re-scores
the generated tokens with one batched prefill, whose prompt part the radix cache serves; with
``when_tempered`` it keeps the server's numbers unless they are tempered (temperature other than
0 or 1 without ``original_logprobs``), trading exactness for one request less.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, model_validator
from specs_core.backend_kit.chat import ChatRenderer, build_renderer
from specs_core.backend_kit.http import (
    HttpOptions,
    HttpPool,
    HttpStatusError,
    Transport,
    chunks,
    field,
)
from specs_core.errors import BackendError, ConfigError, InvalidInputError, ProtocolError
from specs_core.protocols import Capabilities, check_pairs
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

__all__ = ["SGLangModel", "SGLangOptions", "parse_token_entries"]

log = logging.getLogger(__name__)

_TOKENIZE_PATHS = ("/v1/tokenize", "/tokenize")


class SGLangOptions(HttpOptions):
    """Options of the ``sglang`` backend (connection options come from :class:`HttpOptions`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None, description="the model path the server must report (checked at start)"
    )
    name: str | None = Field(default=None, description="the accounting name of this model")
    chat_template: str | None = Field(
        default=None, description="built-in name, Jinja template or file (default: inferred)"
    )
    tokenizer: str | None = Field(default=None, description="tokenizer dir/name for its template")
    max_batch: int = Field(default=64, ge=1, description="prompts per /generate request")
    single_prompt: bool = Field(
        default=False,
        description="send one prompt per /generate request, its text as a string (what "
        "sglang-router's typed API accepts); the batch goes out as concurrent requests",
    )
    original_logprobs: bool = Field(
        default=False,
        description="the server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (untempered logprobs)",
    )
    rescore_generation: Literal["always", "when_tempered"] = Field(
        default="always",
        description="re-score generated tokens by prefill: always (exact) or only when tempered",
    )
    seeded: bool = Field(
        default=True,
        description="the server honours sampling_seed (SGLang: --enable-deterministic-inference)",
    )
    scoring_tokenization: Literal["auto", "tokenize", "prefill"] = "auto"
    engine: dict[str, Any] | None = Field(
        default=None,
        description="run an in-process sglang.Engine with these arguments instead of HTTP",
    )

    @model_validator(mode="after")
    def _one_server(self) -> SGLangOptions:
        if self.engine is not None and self.base_urls():
            raise ValueError("set either url/urls (a server) or engine (in-process), not both")
        if self.engine is not None and "model_path" not in self.engine:
            raise ValueError("engine needs at least model_path")
        return self


def parse_token_entries(
    entries: object, where: str, *, allow_none_first: bool = False
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Token ids and log-probabilities from SGLang's ``[[logprob, token_id, text], ...]`` lists.

    Raises:
        ProtocolError: an entry is malformed or lacks its log-probability.
    """
    if not isinstance(entries, list):
        raise ProtocolError(f"{where}: expected a list of [logprob, token_id, text] entries")
    ids: list[int] = []
    values: list[float] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (list, tuple)) or len(entry) < 2:
            raise ProtocolError(f"{where}[{i}]: expected [logprob, token_id, text], got {entry!r}")
        value, token = entry[0], entry[1]
        if isinstance(token, bool) or not isinstance(token, int):
            raise ProtocolError(f"{where}[{i}]: token id {token!r} is not an integer")
        if value is None and allow_none_first and i == 0:
            value = 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{where}[{i}]: log-probability {value!r} is not a number")
        ids.append(token)
        values.append(float(value))
    return tuple(ids), tuple(values)


def _cut_at_stop(text: str, stop: str) -> str:
    at = text.find(stop)
    return text[: at + len(stop)] if at >= 0 else text + stop


class SGLangModel:
    """A language model served by SGLang (HTTP, or an in-process ``sglang.Engine``).

    Args:
        options: validated backend options.
        transport: a ready transport (tests and embedding apps); default: built from options.
    """

    def __init__(self, options: SGLangOptions, transport: Transport | None = None) -> None:
        self.options = options
        self._transport = transport
        self._renderer: ChatRenderer | None = None
        self._model_path = ""
        self._tokenize_path: str | None = None
        self._tokenize_probed = False
        self._special_prefix: tuple[int, ...] | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- identity ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``options.name``, else ``sglang:<model>``, else ``sglang@<host:port>``."""
        opts = self.options
        if opts.name:
            return opts.name
        if opts.model:
            return f"sglang:{opts.model}"
        if opts.engine is not None:
            return f"sglang-engine:{opts.engine['model_path']}"
        urls = opts.base_urls()
        return f"sglang@{urlsplit(urls[0]).netloc}" if urls else "sglang"

    @property
    def capabilities(self) -> Capabilities:
        """Batched, prefix-cached generation and scoring with logprobs."""
        return Capabilities(
            batched_generation=True,
            prefix_cache=True,
            generation_logprobs=True,
            scoring=True,
            seeded=self.options.seeded,
            concurrent=True,
        )

    @property
    def model_path(self) -> str:
        """The model path the server reported (empty before the first call)."""
        return self._model_path

    # -- connection -------------------------------------------------------------------------

    def _make_transport(self) -> Transport:
        if self.options.engine is not None:
            from specs_sglang.engine import EngineTransport

            return EngineTransport(self.options.engine)
        return HttpPool(self.options, backend="sglang", extra="sglang")

    def _connect(self) -> tuple[Transport, ChatRenderer]:
        with self._lock:
            if self._closed:
                raise BackendError(f"model {self.name!r} is closed")
            if self._transport is None:
                self._transport = self._make_transport()
            transport = self._transport
            if self._renderer is None:
                where = f"{transport.where} /get_model_info"
                info = transport.request("GET", "/get_model_info")
                model_path = field(info, "model_path", str, where)
                if info.get("is_generation") is False:
                    raise ConfigError(
                        f"{transport.where} serves {model_path!r} as a non-generative model "
                        "(--is-embedding): use it as the reward model 'sglang-prm' instead"
                    )
                wanted = self.options.model
                if wanted and wanted != model_path and not model_path.endswith(wanted):
                    raise ConfigError(
                        f"{transport.where} serves {model_path!r}, not {wanted!r}: fix url or model"
                    )
                self._renderer = build_renderer(
                    self.options.chat_template,
                    self.options.tokenizer,
                    model_path,
                    backend="sglang",
                    extra="sglang",
                )
                self._model_path = model_path
            return transport, self._renderer

    def render(self, prompt: Prompt) -> str:
        """The raw text this model continues for ``prompt``."""
        return self._connect()[1](prompt)

    # -- generation -------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times (one ``/generate`` request per chunk)."""
        if not prompts:
            return []
        transport, render = self._connect()
        texts = [render(p) for p in prompts]
        groups = transport.map(
            lambda chunk: self._generate_chunk(transport, list(chunk), params),
            list(chunks(texts, self.options.max_batch)),
        )
        results = [row for group in groups for row in group]
        tempered = not self.options.original_logprobs and params.temperature not in (0.0, 1.0)
        if tempered or self.options.rescore_generation == "always":
            results = self._rescore(transport, texts, results)
        return results

    def _generate_chunk(
        self, transport: Transport, texts: list[str], params: SamplingParams
    ) -> list[list[Completion]]:
        sampling: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "no_stop_trim": True,
        }
        if params.stop:
            sampling["stop"] = list(params.stop)
        n = params.n
        payload: dict[str, Any] = {"return_logprob": True}
        if params.seed is not None and n > 1:  # one seed per sample, or all n would be equal
            payload["text"] = [t for t in texts for _ in range(n)]
            payload["sampling_params"] = [
                dict(sampling, n=1, sampling_seed=params.seed + j) for _ in texts for j in range(n)
            ]
        else:
            if params.seed is not None:
                sampling["sampling_seed"] = params.seed
            payload["text"] = texts
            payload["sampling_params"] = dict(sampling, n=n)
        where = f"{transport.where} /generate"
        outputs = self._post_generate(transport, payload)
        if not isinstance(outputs, list) or len(outputs) != len(texts) * n:
            got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
            raise ProtocolError(
                f"{where}: expected {len(texts) * n} results ({len(texts)} prompts x n={n}), "
                f"got {got}"
            )
        completions = [
            self._completion(out, f"{where} result {i}") for i, out in enumerate(outputs)
        ]
        return [completions[i * n : (i + 1) * n] for i in range(len(texts))]

    @staticmethod
    def _completion(out: object, where: str) -> Completion:
        text = field(out, "text", str, where)
        meta = field(out, "meta_info", dict, where)
        ids, values = parse_token_entries(
            field(meta, "output_token_logprobs", list, where),
            f"{where} meta_info.output_token_logprobs",
        )
        finish = field(meta, "finish_reason", dict, where)
        kind = field(finish, "type", str, f"{where} finish_reason")
        matched = finish.get("matched")
        if kind == "length":
            reason = FinishReason.LENGTH
        elif kind == "stop" and isinstance(matched, str) and matched:
            reason = FinishReason.STOP
            text = _cut_at_stop(text, matched)
        elif kind == "stop":
            reason = FinishReason.EOS
            if ids and isinstance(matched, int) and ids[-1] == matched:  # drop the EOS token
                ids, values = ids[:-1], values[:-1]
        elif kind == "abort":
            raise BackendError(f"{where}: the server aborted the request: {finish.get('message')}")
        else:
            raise ProtocolError(f"{where}: unknown finish_reason type {kind!r}")
        return Completion(
            text=text,
            token_ids=ids,
            logprobs=values,
            finish_reason=reason,
            prompt_tokens=int(field(meta, "prompt_tokens", int, where)),
            cached_tokens=int(meta.get("cached_tokens") or 0),
        )

    def _rescore(
        self, transport: Transport, texts: list[str], results: list[list[Completion]]
    ) -> list[list[Completion]]:
        """Replace generation logprobs by those of a prefill of the generated tokens."""
        where = [(i, j) for i, row in enumerate(results) for j, c in enumerate(row) if c.token_ids]
        if not where:
            return results
        prompt_ids = self._tokenize(transport, texts, special=True)
        scored = self._score_ids(
            transport, [(prompt_ids[i], results[i][j].token_ids) for i, j in where]
        )
        fresh = [list(row) for row in results]
        for (i, j), s in zip(where, scored, strict=True):
            fresh[i][j] = dataclasses.replace(results[i][j], logprobs=s.logprobs)
        return fresh

    # -- scoring ----------------------------------------------------------------------------

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """Log-probabilities of each continuation after its prompt, by prefill only."""
        check_pairs(prompts, continuations)
        if not prompts:
            return []
        transport, render = self._connect()
        prefixes = [render(p) for p in prompts]
        prefix_ids = self._tokenize(transport, prefixes, special=True)
        cont_ids = self._tokenize(transport, list(continuations), special=False)
        return self._score_ids(transport, list(zip(prefix_ids, cont_ids, strict=True)))

    def _tokenize_endpoint(self, transport: Transport) -> str | None:
        mode = self.options.scoring_tokenization
        if mode == "prefill":
            return None
        with self._lock:
            if self._tokenize_probed:
                return self._tokenize_path
        found: str | None = None
        for path in _TOKENIZE_PATHS:
            try:
                transport.request("POST", path, {"prompt": ["a"], "add_special_tokens": False})
            except HttpStatusError as e:  # absent (404/405) or of another shape: not usable
                if e.status not in (404, 405):
                    log.warning(
                        "%s %s is not usable (%s); trying the next", transport.where, path, e
                    )
                continue
            found = path
            break
        if found is None and mode == "tokenize":
            raise ConfigError(
                f"{transport.where} offers no /v1/tokenize or /tokenize endpoint; set "
                "scoring_tokenization: prefill (or auto)"
            )
        if found is None:
            log.info("%s has no tokenize endpoint: scoring in prefill mode", transport.where)
        with self._lock:
            self._tokenize_path, self._tokenize_probed = found, True
        return found

    def _tokenize(
        self, transport: Transport, texts: Sequence[str], *, special: bool
    ) -> list[tuple[int, ...]]:
        """Token ids of ``texts`` as the server's tokenizer makes them (special tokens or not)."""
        path = self._tokenize_endpoint(transport)
        if path is None:
            return self._tokenize_by_prefill(transport, texts, special=special)
        where = f"{transport.where} {path}"
        unique = list(dict.fromkeys(texts))

        def run(batch: Sequence[str]) -> list[tuple[int, ...]]:
            answer = transport.request(
                "POST", path, {"prompt": list(batch), "add_special_tokens": special}
            )
            rows = field(answer, "tokens", list, where)
            if len(rows) != len(batch) or not all(isinstance(r, list) for r in rows):
                raise ProtocolError(f"{where}: expected {len(batch)} token lists in 'tokens'")
            return [tuple(int(t) for t in r) for r in rows]

        done = transport.map(run, list(chunks(unique, self.options.max_batch)))
        table = dict(zip(unique, (ids for rows in done for ids in rows), strict=True))
        return [table[t] for t in texts]

    def _tokenize_by_prefill(
        self, transport: Transport, texts: Sequence[str], *, special: bool
    ) -> list[tuple[int, ...]]:
        """Token ids from a prefill that returns every prompt token (``logprob_start_len: 0``)."""
        where = f"{transport.where} /generate (tokenizing prefill)"
        unique = [t for t in dict.fromkeys(texts) if t]  # an empty text has no tokens
        if not special and self._special_prefix is None:
            a, b = self._tokenize_by_prefill(transport, ["a", "b"], special=True)
            size = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), 0)
            self._special_prefix = a[:size]

        def run(batch: Sequence[str]) -> list[tuple[int, ...]]:
            payload = {
                "text": list(batch),
                "sampling_params": {"max_new_tokens": 0},
                "return_logprob": True,
                "logprob_start_len": 0,
            }
            answer = self._post_generate(transport, payload)
            rows = []
            for out in self._expect_list(answer, batch, where):
                meta = field(out, "meta_info", dict, where)
                entries = field(meta, "input_token_logprobs", list, where)
                ids, _ = parse_token_entries(entries, where, allow_none_first=True)
                if len(ids) != field(meta, "prompt_tokens", int, where):
                    raise ProtocolError(f"{where}: input_token_logprobs do not cover the prompt")
                rows.append(ids)
            return rows

        done = transport.map(run, list(chunks(unique, self.options.max_batch)))
        table = dict(zip(unique, (ids for rows in done for ids in rows), strict=True))
        table[""] = ()
        cut = self._special_prefix if not special and self._special_prefix else ()
        return [table[t][len(cut) :] if table[t][: len(cut)] == cut else table[t] for t in texts]

    def _score_ids(
        self, transport: Transport, items: list[tuple[tuple[int, ...], tuple[int, ...]]]
    ) -> list[TokenLogprobs]:
        for prefix, _ in items:
            if not prefix:
                raise InvalidInputError("cannot score a continuation of an empty prompt")
        todo = [k for k, (_, cont) in enumerate(items) if cont]
        where = f"{transport.where} /generate (prefill)"

        def run(batch: Sequence[int]) -> list[TokenLogprobs]:
            payload = {
                "input_ids": [list(items[k][0]) + list(items[k][1]) for k in batch],
                "sampling_params": {"max_new_tokens": 0},
                "return_logprob": True,
                "logprob_start_len": [len(items[k][0]) - 1 for k in batch],
            }
            answer = self._post_generate(transport, payload)
            outputs = self._expect_list(answer, batch, where)
            scored = []
            for k, out in zip(batch, outputs, strict=True):
                prefix, cont = items[k]
                meta = field(out, "meta_info", dict, where)
                entries = field(meta, "input_token_logprobs", list, where)
                if len(entries) < len(cont):
                    raise ProtocolError(
                        f"{where}: input_token_logprobs has {len(entries)} entries for a "
                        f"{len(cont)}-token continuation"
                    )
                ids, values = parse_token_entries(
                    entries[len(entries) - len(cont) :], f"{where} input_token_logprobs"
                )
                if ids != cont:
                    raise ProtocolError(
                        f"{where}: input_token_logprobs token ids {list(ids)[:8]} do not match the "
                        f"input ids sent {list(cont)[:8]}"
                    )
                cached = min(int(meta.get("cached_tokens") or 0), len(prefix))
                scored.append(TokenLogprobs(ids, values, len(prefix), cached))
            return scored

        done = transport.map(run, list(chunks(todo, self.options.max_batch)))
        results = [TokenLogprobs((), (), len(prefix), 0) for prefix, _ in items]
        for k, s in zip(todo, (s for rows in done for s in rows), strict=True):
            results[k] = s
        return results

    def _post_generate(self, transport: Transport, payload: dict[str, Any]) -> Any:
        """``POST /generate`` with a batched payload (``text`` or ``input_ids`` a list, the
        per-item fields lists or shared); with ``single_prompt``, one request per item, sent
        concurrently, their answers joined in order as one batched answer would be."""
        key = "text" if "text" in payload else "input_ids"
        items = payload[key]
        if not self.options.single_prompt:
            return transport.request("POST", "/generate", payload)

        def one(i: int) -> list[Any]:
            single = {
                k: (v[i] if isinstance(v, list) and k != key else v) for k, v in payload.items()
            }
            single[key] = items[i]
            answer = transport.request("POST", "/generate", single)
            return answer if isinstance(answer, list) else [answer]

        return [out for outs in transport.map(one, list(range(len(items)))) for out in outs]

    @staticmethod
    def _expect_list(outputs: object, batch: Sequence[object], where: str) -> list[Any]:
        if not isinstance(outputs, list) or len(outputs) != len(batch):
            got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
            raise ProtocolError(f"{where}: expected a list of {len(batch)} results, got {got}")
        return outputs

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close connections (or shut the in-process engine down). Calling it twice is harmless."""
        with self._lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
