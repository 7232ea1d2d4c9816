"""HTTP plumbing shared by the backends and reward models that talk to inference servers.

One :class:`HttpPool` per model: a pooled ``httpx.Client`` per base URL, a deadline on each whole
request, retries with exponential backoff, and a limit on requests in flight.

Replicas (several ``urls``): the requests made while a search runs carry its routing key (the
question: :func:`route_by`, set by :meth:`specs_core.solver.Specs.solve`), and every request of
one key goes to the same replica, chosen by rendezvous hashing among the healthy ones, so a
problem's prompts meet the prefix cache its earlier requests filled. Requests without a key go
round robin. A replica whose request fails with a connection error, 429 or 5xx is marked down
for ``replica_down_s`` seconds and skipped meanwhile (its keys move to the others, and come
back when it answers again: the first request after the pause probes it); the retry goes to the
next replica in the key's order, so a dead replica loses no request.

Retries: a request is sent again only when the server cannot still be working on it: the
connection failed or broke, or the server answered HTTP 429 or 5xx. A request that timed out
(``timeout_s`` bounds the whole request, from sending it to the last byte of the answer, however
slowly the bytes come) is abandoned, its connection closed, and not sent again: a server that is
slow under load would otherwise get a copy of the work with each retry. A 4xx answer is never
retried: it raises :class:`HttpStatusError` at once, which callers turn into a capability or
configuration error. A 2xx answer that is not JSON, or larger than ``max_response_mb``, raises
:class:`~specs_core.errors.ProtocolError`.

``httpx`` is imported when a pool is built, never at import time; without it the pool raises
:class:`~specs_core.errors.BackendUnavailableError` naming the pip extra.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from specs_core.errors import BackendError, BackendUnavailableError, ConfigError, ProtocolError

__all__ = [
    "HttpOptions",
    "HttpPool",
    "HttpStatusError",
    "Transport",
    "chunks",
    "field",
    "import_httpx",
    "route_by",
    "routing_key",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_routing_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "specs_routing_key", default=None
)


@contextmanager
def route_by(key: str | None) -> Iterator[None]:
    """Requests made inside the block (in this thread, and in the pools' worker threads it
    starts) go to the replica that ``key`` is assigned to (see the module docstring)."""
    token = _routing_key.set(key)
    try:
        yield
    finally:
        _routing_key.reset(token)


def routing_key() -> str | None:
    """The routing key of the requests made now (``None``: round robin)."""
    return _routing_key.get()


class HttpOptions(BaseModel):
    """Connection options every HTTP backend and reward model shares.

    Attributes:
        url: the server's base URL (``http://host:port``), e.g. an SGLang router.
        urls: several base URLs of identical replicas (routing: see the module docstring).
        routing: ``affinity`` (a search's requests stick to one replica) or ``round_robin``.
        replica_down_s: seconds a replica is skipped after a failed request.
        timeout_s: the most seconds one whole request may take (sending, waiting, reading).
        connect_timeout_s: the most seconds to wait for a connection.
        max_retries: retries after a connection error, HTTP 429 or 5xx (not after a timeout).
        max_response_mb: the largest answer accepted, in MiB.
        backoff_s: the first wait between attempts; doubled at each retry.
        backoff_max_s: the longest wait between attempts.
        max_concurrency: the most requests in flight at once from this model.
        api_key: sent as ``Authorization: Bearer``; prefer ``api_key_env``.
        api_key_env: the environment variable holding the API key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="base URL, e.g. http://127.0.0.1:30000")
    urls: tuple[str, ...] = Field(default=(), description="base URLs of identical replicas")
    routing: Literal["affinity", "round_robin"] = Field(
        default="affinity", description="affinity: one replica per search; round_robin"
    )
    replica_down_s: float = Field(
        default=10.0, ge=0, description="seconds a failed replica is skipped"
    )
    timeout_s: float = Field(default=300.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    max_response_mb: float = Field(default=64.0, gt=0)
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    api_key: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _check_urls(self) -> HttpOptions:
        for url in self.base_urls():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"URL {url!r} must look like http://host:port")
        return self

    def base_urls(self) -> tuple[str, ...]:
        """Every configured base URL, without a trailing slash."""
        urls = ((self.url,) if self.url else ()) + tuple(self.urls)
        return tuple(u.rstrip("/") for u in urls)

    def headers(self) -> dict[str, str]:
        """Request headers (the bearer token when one is configured)."""
        key = self.api_key
        if key is None and self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key is None:
                raise ConfigError(
                    f"api_key_env names {self.api_key_env!r}, which is not set; export it or "
                    "remove api_key_env"
                )
        return {"Authorization": f"Bearer {key}"} if key else {}


class HttpStatusError(BackendError):
    """A server answered with an HTTP 4xx status (not retried).

    Attributes:
        status: the HTTP status code.
        body: the start of the response body.
        url: the full request URL.
    """

    def __init__(self, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        super().__init__(f"{url} answered HTTP {status}: {body[:300]}")


class Transport(Protocol):
    """What a backend needs from a connection to its server (HTTP or in-process)."""

    @property
    def where(self) -> str:
        """A short description of the server, for messages."""
        ...

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Send one request and return the decoded JSON answer."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, running up to the concurrency limit at once."""
        ...

    def close(self) -> None:
        """Free connections and threads. Calling it twice is harmless."""
        ...


def import_httpx(backend: str, extra: str) -> Any:
    """Import ``httpx`` or raise :class:`BackendUnavailableError` naming ``extra``."""
    try:
        import httpx
    except ImportError as e:
        raise BackendUnavailableError(backend, extra, "the httpx package is missing") from e
    return httpx


class HttpPool:
    """Pooled, retried, rate-limited JSON requests to one or several identical servers.

    Args:
        options: URLs, timeouts, retry budget and concurrency limit.
        backend: the backend name, for errors.
        extra: the pip extra that installs ``httpx``, for errors.
    """

    def __init__(self, options: HttpOptions, *, backend: str, extra: str) -> None:
        urls = options.base_urls()
        if not urls:
            raise ConfigError(f"backend {backend!r} needs a server: set url (or urls)")
        httpx = import_httpx(backend, extra)
        self._httpx = httpx
        self.options = options
        self.urls = urls
        timeout = httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s)
        limits = httpx.Limits(
            max_connections=options.max_concurrency,
            max_keepalive_connections=options.max_concurrency,
        )
        headers = options.headers()
        self._clients = [
            httpx.Client(base_url=u, timeout=timeout, limits=limits, headers=headers) for u in urls
        ]
        self._slots = threading.BoundedSemaphore(options.max_concurrency)
        self._turn = 0
        self._turn_lock = threading.Lock()
        self._down_until = [0.0] * len(self._clients)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    @property
    def where(self) -> str:
        """The base URLs, comma separated."""
        return ", ".join(self.urls)

    def _order(self) -> list[int]:
        """The replicas to try, in order: by the routing key (rendezvous hashing) or round
        robin; healthy ones first."""
        n = len(self._clients)
        key = routing_key() if self.options.routing == "affinity" else None
        if key is None:
            with self._turn_lock:
                first = self._turn
                self._turn = (self._turn + 1) % n
            order = [(first + i) % n for i in range(n)]
        else:
            order = sorted(range(n), key=lambda i: _weight(key, self.urls[i]), reverse=True)
        now = time.monotonic()
        with self._turn_lock:
            healthy = [i for i in order if self._down_until[i] <= now]
        return healthy + [i for i in order if i not in healthy]

    def replica_for(self, key: str) -> str:
        """The base URL that ``key``'s requests go to now."""
        with route_by(key):
            return self.urls[self._order()[0]]

    def _mark(self, index: int, ok: bool) -> None:
        if len(self._clients) == 1:
            return
        with self._turn_lock:
            was_down = self._down_until[index] > 0
            self._down_until[index] = 0.0 if ok else time.monotonic() + self.options.replica_down_s
        if not ok:
            log.warning(
                "replica %s marked down for %g s", self.urls[index], self.options.replica_down_s
            )
        elif was_down:
            log.info("replica %s answers again", self.urls[index])

    def _wait(self, attempt: int) -> None:
        delay = min(self.options.backoff_max_s, self.options.backoff_s * (2**attempt))
        if delay > 0:
            time.sleep(delay)

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Send one request, retrying transient failures; return the decoded JSON answer.

        Raises:
            BackendError: every attempt failed (the message names the URL, the number of
                attempts and the last error).
            HttpStatusError: the server answered 4xx (other than 429).
            ProtocolError: the server answered 2xx with a body that is not JSON.
        """
        if self._closed:
            raise BackendError(f"the connection to {self.where} is closed")
        httpx = self._httpx
        attempts = self.options.max_retries + 1
        order = self._order()
        last_error = ""
        url = ""
        for attempt in range(attempts):
            index = order[attempt % len(order)]
            client = self._clients[index]
            url = f"{client.base_url}".rstrip("/") + path
            try:
                with self._slots:
                    status, body = self._send(client, method, path, payload, url)
            except (httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                last_error = f"no connection within the timeout ({type(e).__name__})"
            except (httpx.TimeoutException, _Deadline) as e:
                raise BackendError(
                    f"{method} {url} timed out after {self.options.timeout_s:g} s "
                    f"({type(e).__name__}); the request was abandoned, not retried (the server "
                    "may still be working on it); raise timeout_s for slow servers"
                ) from None
            except httpx.TransportError as e:
                last_error = f"{type(e).__name__}: {e}"
            else:
                if status < 400:
                    self._mark(index, ok=True)
                    return _decode_json(body, url)
                if status != 429 and status < 500:
                    raise HttpStatusError(url, status, body)
                last_error = f"HTTP {status}: {body[:200]}"
            self._mark(index, ok=False)
            log.warning(
                "%s %s attempt %d/%d failed: %s", method, url, attempt + 1, attempts, last_error
            )
            if attempt + 1 < attempts:
                self._wait(attempt)
        raise BackendError(
            f"{method} {url} failed after {attempts} attempt(s): {last_error}; check that the "
            "server is running and reachable, or raise max_retries / timeout_s"
        )

    def _send(self, client: Any, method: str, path: str, payload: Any, url: str) -> tuple[int, str]:
        """One attempt: the status and the body, read before the deadline and within the cap.

        Raises:
            _Deadline: the whole request took longer than ``timeout_s``.
            ProtocolError: the answer is larger than ``max_response_mb``.
        """
        deadline = time.monotonic() + self.options.timeout_s
        cap = int(self.options.max_response_mb * 2**20)
        with client.stream(method, path, json=payload) as response:
            body = bytearray()
            for chunk in response.iter_bytes():  # decompressed: the cap bounds memory
                body += chunk
                if time.monotonic() > deadline:
                    raise _Deadline  # leaving the block closes the connection
                if len(body) > cap:
                    raise ProtocolError(
                        f"{url} sent an answer larger than {self.options.max_response_mb:g} MiB; "
                        "raise max_response_mb if that is expected"
                    )
            text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, text

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``; up to ``max_concurrency`` run at once, errors re-raised."""
        if len(items) <= 1 or self.options.max_concurrency == 1:
            return [fn(x) for x in items]
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.options.max_concurrency, thread_name_prefix="specs-http"
                )
            executor = self._executor
        # each item runs in the caller's context: its routing key (and budget) go along
        futures = [executor.submit(contextvars.copy_context().run, fn, x) for x in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Close the connections and join the worker threads. Calling it twice is harmless."""
        self._closed = True
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for client in self._clients:
            client.close()


def _weight(key: str, url: str) -> int:
    """Rendezvous (highest random weight) hashing: the replica with the largest weight for a key
    serves it; removing a replica moves only its own keys."""
    return int.from_bytes(hashlib.blake2b(f"{key}\0{url}".encode(), digest_size=8).digest(), "big")


class _Deadline(Exception):
    """The whole request ran past ``timeout_s``."""


def _no_nan(constant: str) -> float:
    """``json`` parses ``NaN``, ``Infinity`` and ``-Infinity`` through this; a NaN from a server
    (a log-probability or a reward) would otherwise compare false with every threshold and
    reject every draft without a word."""
    if constant == "NaN":
        raise ValueError("NaN")
    return float(constant)


def _decode_json(text: str, url: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_nan)
    except json.JSONDecodeError as e:
        raise ProtocolError(
            f"{url} answered with a body that is not JSON ({e.msg} at char {e.pos}): "
            f"{text[:120]!r}; is the URL pointing at the right server?"
        ) from e
    except ValueError:  # from _no_nan
        raise ProtocolError(
            f"{url} answered NaN where a number belongs (a broken model or server); check the "
            "server's logs"
        ) from None


def field(obj: object, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]``, checked to be of ``kinds``; a :class:`ProtocolError` naming the field if not.

    Args:
        obj: a decoded JSON object.
        key: the field name.
        kinds: the accepted Python type(s).
        where: the endpoint or object the field belongs to, for the message.
    """
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ProtocolError(
            f"{where}: the response lacks the field {key!r} "
            f"(has {', '.join(sorted(obj)) or 'none'})"
        )
    value = obj[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ProtocolError(f"{where}: field {key!r} is a boolean, expected {_names(kinds)}")
    if not isinstance(value, kinds):
        raise ProtocolError(
            f"{where}: field {key!r} is {type(value).__name__}, expected {_names(kinds)}"
        )
    return value


def _names(kinds: type | tuple[type, ...]) -> str:
    if isinstance(kinds, tuple):
        return " or ".join(k.__name__ for k in kinds)
    return kinds.__name__


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
