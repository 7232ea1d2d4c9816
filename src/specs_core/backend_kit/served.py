"""What a reward model served over HTTP shares: its name, a connection opened on first use, the
tokens it evaluated, and closing (``sglang-prm``, ``vllm-prm``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import ClassVar, Protocol
from urllib.parse import urlsplit

from specs_core.backend_kit.chat import ChatRenderer, build_renderer
from specs_core.backend_kit.http import HttpOptions, HttpPool, Transport
from specs_core.errors import BackendError
from specs_core.rewards import TokenTally

__all__ = ["ServedRewardModel"]


class _NamedHttpOptions(Protocol):
    name: str | None
    chat_template: str | None
    tokenizer: str | None

    def base_urls(self) -> tuple[str, ...]: ...


class ServedRewardModel:
    """The base of a reward model behind an HTTP server.

    Subclasses set ``kind`` (the registered name, used in the default name and in errors) and
    ``extra`` (the pip extra that installs ``httpx``), call :meth:`_http` for the transport and
    count the tokens of each call with ``self._tally.add`` on the calling thread.

    Args:
        options: connection options with a ``name``.
        transport: a ready transport (tests); default: an :class:`HttpPool` from the options.
    """

    kind: ClassVar[str] = "served-reward"
    extra: ClassVar[str] = "openai"

    def __init__(self, options: HttpOptions, transport: Transport | None = None) -> None:
        self.options = options
        self._transport = transport
        self._lock = threading.Lock()
        self._tally = TokenTally()
        self._renderer: ChatRenderer | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """``options.name`` or ``<kind>@<host:port>``."""
        options: _NamedHttpOptions = self.options  # type: ignore[assignment]
        if options.name:
            return options.name
        urls = options.base_urls()
        return f"{self.kind}@{urlsplit(urls[0]).netloc}" if urls else self.kind

    def _http(self) -> Transport:
        """The transport, opened on first use.

        Raises:
            BackendError: the model was closed.
        """
        with self._lock:
            if self._closed:
                raise BackendError(f"reward model {self.name!r} is closed")
            if self._transport is None:
                self._transport = HttpPool(self.options, backend=self.kind, extra=self.extra)
            return self._transport

    def _chat(self) -> ChatRenderer:
        """The renderer of the options' ``chat_template`` (or ``tokenizer``), built once."""
        options: _NamedHttpOptions = self.options  # type: ignore[assignment]
        with self._lock:
            if self._renderer is None:
                self._renderer = build_renderer(
                    options.chat_template,
                    options.tokenizer,
                    None,
                    backend=self.kind,
                    extra=self.extra,
                )
            return self._renderer

    def take_token_usage(self) -> Mapping[str, int]:
        """Tokens the model evaluated since the last call (read by the search accounting)."""
        return self._tally.take()

    def close(self) -> None:
        """Close the connections. Calling it twice is harmless."""
        with self._lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
