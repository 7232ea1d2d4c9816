"""What OpenAI-compatible servers differ in, and how to recognise them.

Servers that speak ``/v1/completions`` disagree on details the backend depends on: whether a
request may carry a list of prompts or ``n`` samples, whether ``echo`` log-probabilities of the
prompt are right, whether they report token ids, where their tokenizer endpoint is, and how to
keep the matched stop string in the text. A profile records those facts for one server family;
``server: auto`` picks it from the ``owned_by`` field of ``GET /v1/models``. Every fact can be
overridden in the backend's options.

llama-cpp-python 0.3.36 (``python -m llama_cpp.server``) is the known case of wrong echo
log-probabilities: when the prompt does not start with the BOS token they are shifted by one
position (each prompt token gets the probability of the token after it); when it does, the BOS
token is dropped from the echo and the text offsets skip special tokens, so the echoed tokens
cannot be matched with the prompt. Its profile declares echo broken. It also ignores ``n``,
refuses lists of prompts, treats ``max_tokens: 0`` as "until the end", needs
``--logits_all true`` for any log-probabilities, and reuses its KV cache across requests, so a
seed does not reproduce samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PROFILES", "EchoLogprobs", "ServerProfile", "profile_for_owner"]

EchoLogprobs = Literal["trusted", "broken", "detect"]


@dataclass(frozen=True)
class ServerProfile:
    """The behaviour of one family of OpenAI-compatible servers.

    Attributes:
        name: the family (``vllm``, ``sglang``, ``llama.cpp``, ``llama-cpp-python``, ``generic``).
        batch_prompts: ``prompt`` may be a list (one request for many prompts).
        native_n: the server returns ``n`` choices per prompt.
        echo_logprobs: the prompt log-probabilities returned with ``echo`` are right
            (``trusted``), wrong (``broken``), or unknown and measured once (``detect``).
        echo_max_tokens: ``max_tokens`` for an echo-only scoring request (0 where allowed).
        tokens_as_ids: the server understands ``return_tokens_as_token_ids`` (vLLM).
        token_prompts: ``prompt`` may be token ids (lists of ints), for exact echo scoring.
        tokenize_path: the tokenizer endpoint, if any.
        tokenize_field: the request field holding the text for that endpoint.
        tokenize_lists: that endpoint takes a list of texts in one request.
        extra_body: fields added to every completion request (e.g. keep stop strings).
        seeded: a seed makes sampling reproducible across requests.
        prompt_logprobs: the server returns ``prompt_logprobs`` per choice (vLLM): scoring
            reads the prompt's own log-probabilities there instead of echoing it.
    """

    name: str
    batch_prompts: bool = True
    native_n: bool = True
    echo_logprobs: EchoLogprobs = "detect"
    echo_max_tokens: int = 0
    tokens_as_ids: bool = False
    token_prompts: bool = False
    tokenize_path: str | None = None
    tokenize_field: str = "prompt"
    tokenize_lists: bool = False
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = True
    prompt_logprobs: bool = False


PROFILES: dict[str, ServerProfile] = {
    "vllm": ServerProfile(
        "vllm",
        echo_logprobs="trusted",
        # vLLM's SamplingParams refuses max_tokens < 1 ("max_tokens must be at least 1")
        echo_max_tokens=1,
        tokens_as_ids=True,
        token_prompts=True,
        tokenize_path="/tokenize",
        extra_body={"include_stop_str_in_output": True},
        prompt_logprobs=True,
    ),
    "sglang": ServerProfile(
        "sglang",
        echo_logprobs="trusted",
        token_prompts=True,
        tokenize_path="/v1/tokenize",
        tokenize_lists=True,
        extra_body={"no_stop_trim": True},
    ),
    "llama.cpp": ServerProfile(
        "llama.cpp",
        native_n=False,
        echo_logprobs="detect",
        echo_max_tokens=1,
        token_prompts=True,
        tokenize_path="/tokenize",
        tokenize_field="content",
    ),
    "llama-cpp-python": ServerProfile(
        "llama-cpp-python",
        batch_prompts=False,
        native_n=False,
        echo_logprobs="broken",
        echo_max_tokens=1,
        tokenize_path="/extras/tokenize",
        tokenize_field="input",
        seeded=False,
    ),
    "generic": ServerProfile("generic"),
}

_OWNERS = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llama.cpp",
    "me": "llama-cpp-python",
}


def profile_for_owner(owned_by: object) -> ServerProfile:
    """The profile for a ``/v1/models`` ``owned_by`` value (``generic`` when unknown)."""
    return PROFILES[_OWNERS.get(str(owned_by).lower(), "generic")]
