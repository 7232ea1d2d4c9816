"""The ``openai`` backend: any server that speaks OpenAI's ``/v1/completions``.

Generation sends the rendered chat prompts as raw text with ``n``, ``stop``, ``logprobs``,
``seed``, ``temperature`` and ``top_p`` (lists of prompts and ``n`` where the server supports
them, else one request per prompt or sample, run concurrently). The matched stop string is kept
at the end of the text: from ``stop_reason`` (vLLM) or ``matched_stop`` (SGLang) when reported,
else from the returned tokens, which run past the trimmed text when a stop string ended it.

Generation log-probabilities are the server's, which some servers report after temperature
scaling (SGLang without ``SGLANG_RETURN_ORIGINAL_LOGPROB=1``: set ``tempered_logprobs: true``) and
all compute in decode kernels that differ numerically from their prefill kernels. Tempered ones
are replaced by echo scores of the generated text; ``rescore_generation: always`` does so for
every generation, making them equal to what scoring returns (it needs trusted echo scoring).

Scoring sends ``prompt + continuation`` with ``echo``, ``logprobs`` and ``max_tokens: 0`` (1 on
servers that refuse 0, such as vLLM). On vLLM (``prompt_logprobs``) it asks for the prompt's own
log-probabilities instead (``prompt_logprobs: 0``, ``max_tokens: 1``; each choice's
``prompt_logprobs`` holds, per prompt token after the first, ``{token_id: {"logprob": ...}}``, as
vllm/entrypoints/openai/protocol.py documents), which needs no echo check.
Where the server takes prompts as token ids (``token_prompts``: vLLM,
SGLang, llama.cpp) it sends the prompt's ids followed by the continuation's, each from the
server's tokenizer, and keeps the continuation's positions: token-exact, as generation appends
tokens. Otherwise it sends text and keeps the tokens whose character span lies past the prompt;
then a prompt ending in ``"\n\n"`` before a word may be re-tokenized differently at the seam.
Where the server's echo log-probabilities are broken, or it rejects echo, scoring raises
:class:`~specs_core.errors.CapabilityError`; ``echo_logprobs: detect`` measures it once by
comparing echo scores of a greedy generation with the generation's own log-probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field
from specs_core.backend_kit.chat import ChatRenderer, build_renderer
from specs_core.backend_kit.http import (
    HttpOptions,
    HttpPool,
    HttpStatusError,
    Transport,
    chunks,
    field,
)
from specs_core.errors import (
    BackendError,
    CapabilityError,
    InvalidInputError,
    ProtocolError,
)
from specs_core.protocols import Capabilities, check_pairs
from specs_core.types import Completion, FinishReason, Prompt, SamplingParams, TokenLogprobs

from specs_openai.profiles import PROFILES, EchoLogprobs, ServerProfile, profile_for_owner

__all__ = ["OpenAIModel", "OpenAIOptions"]

log = logging.getLogger(__name__)

PROBE_QUESTION = "What is 2 + 3? Answer in one short sentence."
#: Largest mean |echo - generation| logprob gap (nats/token) still called right: decode and prefill
#: kernels differ (0.02 on average, 0.1 at most, for SmolLM2 Q4_1 in llama.cpp); a one-position
#: shift is off by nats.
DETECT_TOLERANCE = 0.1


class OpenAIOptions(HttpOptions):
    """Options of the ``openai`` backend (connection options come from HttpOptions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="model id sent (default: the first served)")
    name: str | None = Field(default=None, description="the accounting name of this model")
    chat_template: str | None = None
    tokenizer: str | None = None
    server: str = Field(default="auto", description="auto, " + ", ".join(PROFILES))
    batch_prompts: bool | None = None
    native_n: bool | None = None
    echo_logprobs: EchoLogprobs | None = None
    tokens_as_ids: bool | None = None
    token_prompts: bool | None = Field(
        default=None, description="the server takes prompts as token ids (exact echo scoring)"
    )
    tempered_logprobs: bool = Field(
        default=False, description="the server's generation logprobs follow the temperature"
    )
    rescore_generation: Literal["always", "when_tempered"] = Field(
        default="when_tempered",
        description="re-score generated text by echo: always (exact) or only when tempered",
    )
    seeded: bool | None = Field(default=None, description="a seed reproduces samples")
    prompt_logprobs: bool | None = Field(
        default=None, description="score with the server's prompt_logprobs (vLLM) instead of echo"
    )
    max_batch: int = Field(default=32, ge=1)


def _usage_counts(usage: Mapping[str, Any], known: tuple[int, int] | None) -> tuple[int, int]:
    """(prompt tokens, cached tokens) of a one-prompt request from its usage block."""
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    count = known[0] if known else (prompt if isinstance(prompt, int) else 0)
    return count, min(cached, count) if isinstance(cached, int) else 0


def _cut_at_stop(text: str, stop: str) -> str:
    at = text.find(stop)
    return text[: at + len(stop)] if at >= 0 else text + stop


class OpenAIModel:
    """A language model behind an OpenAI-compatible ``/v1/completions`` endpoint.

    Args:
        options: validated options.
        transport: a ready transport (tests); default: an HttpPool built from options.
    """

    def __init__(self, options: OpenAIOptions, transport: Transport | None = None) -> None:
        if options.server != "auto" and options.server not in PROFILES:
            raise InvalidInputError(
                f"server {options.server!r} is unknown; use auto or one of {', '.join(PROFILES)}"
            )
        self.options = options
        self._transport = transport
        self._renderer: ChatRenderer | None = None
        self._profile: ServerProfile | None = None
        self._model = options.model or ""
        self._echo_verdict: str | None = None
        self._bos_prefix: tuple[int, ...] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        """``options.name``, else ``openai:<model>``, else ``openai@<host:port>``."""
        if self.options.name:
            return self.options.name
        if self.options.model:
            return f"openai:{self.options.model}"
        urls = self.options.base_urls()
        return f"openai@{urlsplit(urls[0]).netloc}" if urls else "openai"

    @property
    def capabilities(self) -> Capabilities:
        """Batched generation with logprobs; scoring through ``prompt_logprobs`` (vLLM), or
        through echo unless it is declared or measured broken."""
        scoring = (self.options.echo_logprobs or "detect") != "broken"
        if self._profile is not None and self.options.echo_logprobs is None:
            scoring = self._profile.echo_logprobs != "broken"
        if self._echo_verdict is not None:
            scoring = self._echo_verdict == "trusted"
        declared = bool(self.options.prompt_logprobs and self.options.token_prompts)
        if declared or (self._profile is not None and self._uses_prompt_logprobs(self._profile)):
            scoring = True
        seeded = self.options.seeded
        if seeded is None:
            seeded = self._profile.seeded if self._profile is not None else True
        return Capabilities(
            batched_generation=True,
            prefix_cache=False,
            generation_logprobs=True,
            scoring=scoring,
            seeded=seeded,
            concurrent=True,
        )

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> tuple[Transport, ChatRenderer, ServerProfile]:
        with self._lock:
            if self._closed:
                raise BackendError(f"model {self.name!r} is closed")
            if self._transport is None:
                self._transport = HttpPool(self.options, backend="openai", extra="openai")
            transport = self._transport
            if self._renderer is None or self._profile is None:
                where = f"{transport.where} /v1/models"
                cards = field(transport.request("GET", "/v1/models"), "data", list, where)
                if not cards:
                    raise ProtocolError(f"{where}: the server lists no model")
                card = next(
                    (
                        c
                        for c in cards
                        if isinstance(c, Mapping) and c.get("id") == self.options.model
                    ),
                    cards[0],
                )
                model = self.options.model or str(field(card, "id", str, where))
                owner = card.get("owned_by") if isinstance(card, Mapping) else None
                profile = (
                    profile_for_owner(owner)
                    if self.options.server == "auto"
                    else PROFILES[self.options.server]
                )
                self._renderer = build_renderer(
                    self.options.chat_template,
                    self.options.tokenizer,
                    model,
                    backend="openai",
                    extra="openai",
                )
                self._model, self._profile = model, profile
                log.info("%s: model %r, server profile %r", transport.where, model, profile.name)
            return transport, self._renderer, self._profile

    @property
    def profile(self) -> ServerProfile:
        """The server profile in use (connects on first access)."""
        return self._connect()[2]

    def _setting(self, option: Any, default: Any) -> Any:
        return default if option is None else option

    # -- generation -------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Continue each prompt ``params.n`` times."""
        if not prompts:
            return []
        transport, render, profile = self._connect()
        texts = [render(p) for p in prompts]
        native_n = self._setting(self.options.native_n, profile.native_n)
        batch = self._setting(self.options.batch_prompts, profile.batch_prompts)
        as_ids = self._setting(self.options.token_prompts, profile.token_prompts)
        prompt_ids = self._tokenize(transport, profile, texts, special=True) if as_ids else None
        per_request = params.n if native_n else 1
        repeats = 1 if native_n else params.n
        groups = (
            list(chunks(list(range(len(texts))), self.options.max_batch))
            if batch
            else [[i] for i in range(len(texts))]
        )
        jobs = [(list(g), r) for g in groups for r in range(repeats)]
        results: list[list[Completion | None]] = [[None] * params.n for _ in texts]
        counted: dict[int, tuple[int, int]] = {}  # prompt index -> (prompt tokens, cached)

        def run(job: tuple[list[int], int]) -> None:
            group, rep = job
            seed = None if params.seed is None else params.seed + rep
            body = self._body(params, per_request, seed, profile)
            sent: list[Any] = (
                [list(prompt_ids[i]) for i in group]
                if prompt_ids is not None
                else [texts[i] for i in group]
            )
            body["prompt"] = sent if batch else sent[0]
            choices, usage = self._choices(transport, body, len(group) * per_request)
            if prompt_ids is not None:
                counted.update({i: (len(prompt_ids[i]), 0) for i in group})
            if len(group) == 1:  # the usage block then belongs to this one prompt
                counted[group[0]] = _usage_counts(usage, counted.get(group[0]))
            for index, choice in enumerate(choices):
                where = f"{transport.where} /v1/completions choice {index}"
                c = self._completion(choice, params.stop, where)
                results[group[index // per_request]][rep * per_request + index % per_request] = c

        transport.map(run, jobs)
        missing = [i for i in range(len(texts)) if i not in counted]
        if missing and profile.tokenize_path is not None:
            for i, ids in zip(
                missing,
                self._tokenize(transport, profile, [texts[i] for i in missing], special=True),
                strict=True,
            ):
                counted[i] = (len(ids), 0)
        done = [
            [
                dataclasses.replace(
                    c,
                    prompt_tokens=counted.get(i, (0, 0))[0],
                    cached_tokens=counted.get(i, (0, 0))[1],
                )
                for c in row
                if c is not None
            ]
            for i, row in enumerate(results)
        ]
        if self._needs_ids(profile):
            done = self._fill_ids(transport, profile, done)
        tempered = self.options.tempered_logprobs and params.temperature not in (0.0, 1.0)
        if tempered or self.options.rescore_generation == "always":
            done = self._rescore(prompts, done)
        return done

    def _body(
        self, params: SamplingParams, n: int, seed: int | None, profile: ServerProfile
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "logprobs": 1,
            **profile.extra_body,
        }
        if n > 1:
            body["n"] = n
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if self._setting(self.options.tokens_as_ids, profile.tokens_as_ids):
            body["return_tokens_as_token_ids"] = True
        return body

    def _choices(
        self, transport: Transport, body: dict[str, Any], expected: int
    ) -> tuple[list[Any], Mapping[str, Any]]:
        """The answer's choices in index order, and its usage block (empty when absent)."""
        where = f"{transport.where} /v1/completions"
        answer = transport.request("POST", "/v1/completions", body)
        choices = field(answer, "choices", list, where)
        if len(choices) != expected:
            raise ProtocolError(
                f"{where}: expected {expected} choices, got {len(choices)}; if this server ignores "
                "'n' or lists of prompts, set native_n: false or batch_prompts: false"
            )
        order = [c.get("index", i) if isinstance(c, Mapping) else i for i, c in enumerate(choices)]
        ordered = [c for _, c in sorted(zip(order, choices, strict=True), key=lambda x: x[0])]
        usage = answer.get("usage")
        return ordered, usage if isinstance(usage, Mapping) else {}

    def _token_ids(self, tokens: list[Any], where: str) -> tuple[int, ...] | None:
        if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
            try:
                return tuple(int(t.split(":", 1)[1]) for t in tokens)
            except ValueError as e:
                raise ProtocolError(f"{where}: malformed token {tokens!r}") from e
        return None

    def _completion(self, choice: object, stops: Sequence[str], where: str) -> Completion:
        if not isinstance(choice, Mapping):
            raise ProtocolError(f"{where}: expected a JSON object, got {type(choice).__name__}")
        text = field(choice, "text", str, where)
        lp = field(choice, "logprobs", dict, where)
        tokens = field(lp, "tokens", list, f"{where} logprobs")
        values = field(lp, "token_logprobs", list, f"{where} logprobs")
        if len(values) != len(tokens) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in values
        ):
            raise ProtocolError(f"{where}: logprobs.token_logprobs must hold one number per token")
        finish = choice.get("finish_reason")
        reason = FinishReason.LENGTH
        if finish == "stop":
            matched = choice.get("stop_reason", choice.get("matched_stop"))
            reported = "stop_reason" in choice or "matched_stop" in choice
            if not (isinstance(matched, str) and matched) and not reported:
                matched = self._stop_from_tokens(text, tokens, stops)
            if isinstance(matched, str) and matched:
                reason, text = FinishReason.STOP, _cut_at_stop(text, matched)
            else:
                reason = FinishReason.EOS
        elif finish not in ("length", None):
            raise ProtocolError(f"{where}: unknown finish_reason {finish!r}")
        ids = self._token_ids(tokens, where) or ()
        return Completion(text, ids, tuple(float(v) for v in values), reason)

    @staticmethod
    def _stop_from_tokens(text: str, tokens: list[Any], stops: Sequence[str]) -> str | None:
        joined = "".join(str(t) for t in tokens)
        if not joined.startswith(text):
            return None
        rest = joined[len(text) :]
        return next((s for s in stops if rest.startswith(s)), None)

    def _needs_ids(self, profile: ServerProfile) -> bool:
        return not self._setting(self.options.tokens_as_ids, profile.tokens_as_ids)

    def _fill_ids(
        self, transport: Transport, profile: ServerProfile, rows: list[list[Completion]]
    ) -> list[list[Completion]]:
        texts = [c.text for row in rows for c in row]
        ids = iter(self._tokenize(transport, profile, texts, special=False))
        return [[dataclasses.replace(c, token_ids=next(ids)) for c in row] for row in rows]

    def _tokenize(
        self, transport: Transport, profile: ServerProfile, texts: Sequence[str], *, special: bool
    ) -> list[tuple[int, ...]]:
        """Token ids from the server's tokenizer endpoint (special tokens added or not)."""
        path = profile.tokenize_path
        if path is None:
            raise CapabilityError(
                f"{transport.where} reports no token ids and has no known tokenizer endpoint: set "
                "tokens_as_ids: true (vLLM) or server: to its family"
            )
        where = f"{transport.where} {path}"
        name = profile.tokenize_field

        def one(text: str) -> tuple[int, ...]:
            body: dict[str, Any] = {name: text}
            if name == "prompt":
                body.update(model=self._model, add_special_tokens=special)
            elif name == "content":
                body["add_special"] = special
            rows = field(transport.request("POST", path, body), "tokens", list, where)
            if rows and isinstance(rows[0], list):
                rows = rows[0]
            return tuple(int(t) for t in rows)

        def many(batch: Sequence[str]) -> list[tuple[int, ...]]:
            body = {name: list(batch), "model": self._model, "add_special_tokens": special}
            rows = field(transport.request("POST", path, body), "tokens", list, where)
            if len(rows) != len(batch) or not all(isinstance(r, list) for r in rows):
                raise ProtocolError(f"{where}: expected {len(batch)} token lists in 'tokens'")
            return [tuple(int(t) for t in r) for r in rows]

        unique = list(dict.fromkeys(texts))
        if profile.tokenize_lists:
            done = transport.map(many, list(chunks(unique, self.options.max_batch)))
            found = [ids for rows in done for ids in rows]
        else:
            found = transport.map(one, unique)
        table = dict(zip(unique, found, strict=True))
        if name != "input" or special:
            return [table[t] for t in texts]
        if self._bos_prefix is None:  # this endpoint always adds the model's special tokens
            self._bos_prefix = one("")
        cut = len(self._bos_prefix)
        return [table[t][cut:] if table[t][:cut] == self._bos_prefix else table[t] for t in texts]

    def _rescore(
        self, prompts: Sequence[Prompt], rows: list[list[Completion]]
    ) -> list[list[Completion]]:
        pairs = [(p, c) for p, row in zip(prompts, rows, strict=True) for c in row]
        scored = iter(self.logprobs([p for p, _ in pairs], [c.text for _, c in pairs]))
        return [
            [
                dataclasses.replace(c, token_ids=(s := next(scored)).token_ids, logprobs=s.logprobs)
                for c in row
            ]
            for row in rows
        ]

    # -- scoring ----------------------------------------------------------------------------

    def _check_echo(
        self, transport: Transport, render: ChatRenderer, profile: ServerProfile
    ) -> None:
        mode = self.options.echo_logprobs or profile.echo_logprobs
        if mode == "trusted":
            return
        if mode == "detect" and self._echo_verdict is None:
            self._echo_verdict = self._detect_echo(transport, render, profile)
        if mode == "broken" or self._echo_verdict != "trusted":
            why = "declared broken" if mode == "broken" else self._echo_verdict
            raise CapabilityError(
                f"{transport.where} ({profile.name}) cannot score text: its echo log-probabilities "
                f"are {why}; score with another backend (llamacpp, sglang) or set "
                "echo_logprobs: trusted once the server is fixed"
            )

    def _detect_echo(
        self, transport: Transport, render: ChatRenderer, profile: ServerProfile
    ) -> str:
        prompt = render(Prompt(PROBE_QUESTION))
        body = self._body(SamplingParams(temperature=0.0, max_tokens=8), 1, 0, profile)
        body.pop("seed", None)
        body["prompt"] = prompt
        gen = self._completion(self._choices(transport, body, 1)[0][0], (), "echo probe")
        if not gen.logprobs:
            return "untested (the probe generated nothing)"
        try:
            echoed = self._score(transport, profile, [(prompt, gen.text)])[0]
        except HttpStatusError as e:
            return f"unsupported (HTTP {e.status}: {e.body[:120]})"
        if len(echoed.logprobs) != len(gen.logprobs):
            return f"misaligned ({len(echoed.logprobs)} echo tokens for {len(gen.logprobs)})"
        gaps = [abs(a - b) for a, b in zip(echoed.logprobs, gen.logprobs, strict=True)]
        mean = sum(gaps) / len(gaps)
        log.info(
            "%s: echo vs generation logprob gap: mean %.4f, max %.4f",
            transport.where,
            mean,
            max(gaps),
        )
        if mean <= DETECT_TOLERANCE:
            return "trusted"
        return f"wrong (off by {mean:.3f} nats per token on average, up to {max(gaps):.3f})"

    def logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[TokenLogprobs]:
        """Log-probabilities of each continuation after its prompt, via ``echo``."""
        check_pairs(prompts, continuations)
        if not prompts:
            return []
        transport, render, profile = self._connect()
        if not self._uses_prompt_logprobs(profile):
            self._check_echo(transport, render, profile)
        items = [(render(p), c) for p, c in zip(prompts, continuations, strict=True)]
        try:
            return self._score(transport, profile, items)
        except HttpStatusError as e:
            raise CapabilityError(
                f"{transport.where} refused an echo scoring request (HTTP {e.status}: "
                f"{e.body[:160]}); this server cannot score text"
            ) from e

    def _score(
        self, transport: Transport, profile: ServerProfile, items: list[tuple[str, str]]
    ) -> list[TokenLogprobs]:
        """Echo-score continuations, as token ids where the server takes them, else as text."""
        if self._setting(self.options.token_prompts, profile.token_prompts):
            prefixes = self._tokenize(transport, profile, [p for p, _ in items], special=True)
            conts = self._tokenize(transport, profile, [c for _, c in items], special=False)
            return self._echo(transport, profile, list(zip(prefixes, conts, strict=True)))
        scored = self._echo(transport, profile, items)
        if self._needs_ids(profile):
            ids = self._tokenize(transport, profile, [c for _, c in items], special=False)
            scored = [
                dataclasses.replace(s, token_ids=i) if len(i) == len(s.logprobs) else s
                for s, i in zip(scored, ids, strict=True)
            ]
        return scored

    def _uses_prompt_logprobs(self, profile: ServerProfile) -> bool:
        """Scoring reads vLLM's ``prompt_logprobs`` (it needs prompts as token ids)."""
        return bool(
            self._setting(self.options.prompt_logprobs, profile.prompt_logprobs)
            and self._setting(self.options.token_prompts, profile.token_prompts)
        )

    def _echo(
        self, transport: Transport, profile: ServerProfile, items: Sequence[tuple[Any, Any]]
    ) -> list[TokenLogprobs]:
        """One echo request per group: items are (prefix, continuation) as text or token ids."""
        batch = self._setting(self.options.batch_prompts, profile.batch_prompts)
        groups = (
            [list(g) for g in chunks(list(range(len(items))), self.options.max_batch)]
            if batch
            else [[i] for i in range(len(items))]
        )
        results: list[TokenLogprobs | None] = [None] * len(items)
        where = f"{transport.where} echo"

        def run(group: list[int]) -> None:
            full: list[Any] = []
            for i in group:
                prefix, cont = items[i]
                full.append(prefix + cont if isinstance(prefix, str) else [*prefix, *cont])
            body: dict[str, Any] = {
                "model": self._model,
                "echo": True,
                "logprobs": 1,
                "temperature": 0.0,
                "max_tokens": profile.echo_max_tokens,
                "prompt": full if batch else full[0],
            }
            native = self._uses_prompt_logprobs(profile) and not isinstance(full[0], str)
            if native:
                body = {
                    "model": self._model,
                    "prompt_logprobs": 0,
                    "temperature": 0.0,
                    "max_tokens": 1,
                    "prompt": full if batch else full[0],
                }
            choices, _ = self._choices(transport, body, len(group))
            for i, choice in zip(group, choices, strict=True):
                prefix, cont = items[i]
                if native:
                    results[i] = self._select_prompt_logprobs(
                        choice, tuple(prefix), tuple(cont), where
                    )
                elif isinstance(prefix, str) and isinstance(cont, str):
                    results[i] = self._select_text(choice, prefix, cont, where)
                else:
                    results[i] = self._select_ids(choice, tuple(prefix), tuple(cont), where)

        transport.map(run, groups)
        return [r for r in results if r is not None]

    @staticmethod
    def _values(values: list[Any], chosen: Sequence[int], where: str) -> tuple[float, ...]:
        picked = []
        for i in chosen:
            v = values[i] if i < len(values) else None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ProtocolError(
                    f"{where}: token {i} of the echoed prompt has no log-probability"
                )
            picked.append(float(v))
        return tuple(picked)

    def _select_ids(
        self, choice: object, prefix: tuple[int, ...], cont: tuple[int, ...], where: str
    ) -> TokenLogprobs:
        lp = field(choice, "logprobs", dict, where)
        values = field(lp, "token_logprobs", list, f"{where} logprobs")
        if len(values) < len(prefix) + len(cont):
            raise ProtocolError(
                f"{where}: {len(values)} echoed log-probabilities for a prompt of "
                f"{len(prefix) + len(cont)} tokens"
            )
        chosen = range(len(prefix), len(prefix) + len(cont))
        return TokenLogprobs(cont, self._values(values, chosen, where), prompt_tokens=len(prefix))

    def _select_prompt_logprobs(
        self, choice: object, prefix: tuple[int, ...], cont: tuple[int, ...], where: str
    ) -> TokenLogprobs:
        entries = field(choice, "prompt_logprobs", list, where)
        ids = (*prefix, *cont)
        if len(entries) != len(ids):
            raise ProtocolError(
                f"{where}: {len(entries)} prompt_logprobs entries for a prompt of {len(ids)} tokens"
            )
        values = []
        for i in range(len(prefix), len(ids)):
            entry = entries[i]
            chosen = entry.get(str(ids[i])) if isinstance(entry, Mapping) else None
            value = chosen.get("logprob") if isinstance(chosen, Mapping) else None
            values.append(value)
        picked = self._values(values, range(len(values)), where)
        return TokenLogprobs(cont, picked, prompt_tokens=len(prefix))

    def _select_text(self, choice: object, prefix: str, cont: str, where: str) -> TokenLogprobs:
        lp = field(choice, "logprobs", dict, where)
        tokens = field(lp, "tokens", list, f"{where} logprobs")
        values = field(lp, "token_logprobs", list, f"{where} logprobs")
        offsets = lp.get("text_offset")
        if not isinstance(offsets, list) or len(offsets) != len(tokens):
            offsets, at = [], 0
            for t in tokens:
                offsets.append(at)
                at += len(str(t))
        start, end = len(prefix), len(prefix) + len(cont)
        chosen = [
            i
            for i, (o, t) in enumerate(zip(offsets, tokens, strict=True))
            if o < end and o + len(str(t)) > start and o >= 0
        ]
        ids = self._token_ids([tokens[i] for i in chosen], where) or ()
        before = chosen[0] if chosen else sum(1 for o in offsets if o < start)
        return TokenLogprobs(ids, self._values(values, chosen, where), prompt_tokens=before)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections. Calling it twice is harmless."""
        with self._lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
