"""The ASGI application of ``specs serve``: OpenAI's chat and text completion endpoints.

Routes (OpenAI's shapes: https://platform.openai.com/docs/api-reference/chat, streaming as
server-sent events of ``chat.completion.chunk`` objects ending with ``data: [DONE]``):

- ``POST /v1/chat/completions``, ``POST /v1/completions``: run one search; ``stream: true``
  sends one chunk per committed step (its ``specs`` field: source, reward, decision...), then a
  chunk with the ``finish_reason`` and the search's summary, then, with
  ``stream_options.include_usage``, OpenAI's usage chunk;
- ``GET /v1/models``: the configuration's name and every policy its models can run;
- ``GET /health`` (never needs the key), ``GET /metrics`` (Prometheus text format).

Errors are OpenAI's error objects (``{"error": {"message", "type", "param", "code"}}``): 400 for
a bad request (the message names the field and the fix), 401 without the API key, 404 for an
unknown model, 429 with ``Retry-After`` when the waiting line is full, 500 for a failed search.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from specs_core.answering import AnswerEnd, AnswerStep, search_summary, step_summary
from specs_core.errors import BudgetExceededError, ContextOverflowError, SpecsError
from specs_core.text import terminal_safe
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from specs_serve.protocol import ChatCompletionRequest, CompletionRequest, SearchRequest
from specs_serve.service import (
    QueueFullError,
    SearchJob,
    SearchService,
    Ticket,
    UnknownModelError,
    openai_usage,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_Endpoint = Callable[[Request], Awaitable[Response]]


def _error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_error(error: ValidationError) -> JSONResponse:
    """400 naming each bad field (OpenAI's ``param``: the first of them)."""
    problems = []
    params = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; leave it out"
            if len(item["loc"]) == 1:
                message += " (policy options go in the `specs` field)"
        problems.append(f"{where}: {message}" if where else message)
        params.append(where)
    return _error(400, "; ".join(problems), param=next((p for p in params if p), None))


class _Api:
    """The route handlers, bound to one service."""

    def __init__(self, service: SearchService, api_key: str | None) -> None:
        self.service = service
        self._key = api_key.encode() if api_key else None

    # -- helpers ------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if self._key is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._key)

    def guarded(self, endpoint: _Endpoint) -> _Endpoint:
        async def handler(request: Request) -> Response:
            if not self._authorized(request):
                return _error(
                    401,
                    "missing or wrong API key: send the key the server was started with "
                    "(SPECS_API_KEY) as 'Authorization: Bearer KEY'",
                    "authentication_error",
                    "invalid_api_key",
                )
            return await endpoint(request)

        return handler

    # -- simple routes ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(
            self.service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def _card(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": int(self.service.started),
            "owned_by": "specs",
        }

    async def models(self, request: Request) -> Response:
        data = [self._card(name) for name in self.service.model_ids()]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self.service.model_ids():
            offered = ", ".join(self.service.model_ids())
            message = f"unknown model {name!r}; this server offers {offered}"
            return _error(404, message, code="model_not_found", param="model")
        return JSONResponse(self._card(name))

    # -- searches -----------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._search(request, ChatCompletionRequest, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._search(request, CompletionRequest, chat=False)

    async def _search(
        self, request: Request, kind: type[ChatCompletionRequest | CompletionRequest], chat: bool
    ) -> Response:
        endpoint = request.url.path
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return self._count(endpoint, "-", _error(400, f"the body is not JSON: {e}"))
        try:
            parsed = kind.model_validate(body)
            question, system = parsed.question()
        except ValidationError as e:
            return self._count(endpoint, "-", _validation_error(e))
        except ValueError as e:
            return self._count(endpoint, "-", _error(400, str(e)))
        try:
            job = self.service.job(parsed, question, system)
        except UnknownModelError as e:
            not_found = _error(404, str(e), code="model_not_found", param="model")
            return self._count(endpoint, parsed.model, not_found)
        except SpecsError as e:
            return self._count(endpoint, parsed.model, _error(400, str(e)))
        try:
            ticket = self.service.admission.reserve()
        except QueueFullError as e:
            headers = {"Retry-After": str(e.retry_after)}
            return self._count(
                endpoint, job.model, _error(429, str(e), "rate_limit_error", headers=headers)
            )
        if parsed.stream:
            return StreamingResponse(
                self._events(endpoint, parsed, job, ticket, chat),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(ticket.abandon),
            )
        return await self._whole(request, endpoint, job, ticket, chat)

    def _count(
        self, endpoint: str, model: str, response: Response, seconds: float | None = None
    ) -> Response:
        self.service.metrics.request(endpoint, model, response.status_code, seconds)
        return response

    async def _whole(
        self, request: Request, endpoint: str, job: SearchJob, ticket: Ticket, chat: bool
    ) -> Response:
        start = time.monotonic()

        async def outcome() -> AnswerEnd:
            async with ticket:
                async for event in self.service.run(job):
                    if isinstance(event, AnswerEnd):
                        return event
            raise RuntimeError("the search ended without a result")

        search = asyncio.create_task(outcome())
        gone = asyncio.create_task(_disconnected(request))
        try:
            await asyncio.wait({search, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not search.done():  # the client went away: cancel the search, free its slot
                search.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            ticket.abandon()
        try:
            result = await search
        except asyncio.CancelledError:
            if gone.cancelled() or not gone.done():
                raise
            log.info("%s: the client disconnected; its search was cancelled", endpoint)
            return self._count(endpoint, job.model, Response(status_code=499))
        except Exception as e:
            return self._count(endpoint, job.model, _search_error(e))
        body = _completion(job, result, chat)
        seconds = time.monotonic() - start
        return self._count(endpoint, job.model, JSONResponse(body), seconds)

    async def _events(
        self,
        endpoint: str,
        parsed: SearchRequest,
        job: SearchJob,
        ticket: Ticket,
        chat: bool,
    ) -> AsyncIterator[str]:
        start = time.monotonic()
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        status = 200
        first = True
        try:
            async with ticket:
                async for event in self.service.run(job):
                    if isinstance(event, AnswerStep):
                        delta = _delta(event.content, first, chat, event.reasoning)
                        first = False
                        chunk = _chunk(ident, created, job, delta, None, chat)
                        chunk["specs"] = step_summary(event.record)
                        yield _sse(chunk)
                        continue
                    delta = _delta(event.content, first, chat)
                    chunk = _chunk(ident, created, job, delta, event.finish_reason, chat)
                    summary = search_summary(event.result)
                    if not parsed.include_usage():
                        summary["usage"] = openai_usage(event.result)
                    chunk["specs"] = summary
                    yield _sse(chunk)
                    if parsed.include_usage():
                        usage = _chunk(ident, created, job, "", None, chat)
                        usage["choices"] = []
                        usage["usage"] = openai_usage(event.result)
                        yield _sse(usage)
        except asyncio.CancelledError:
            status = 499
            log.info("%s: the client disconnected; its search was cancelled", endpoint)
            raise
        except Exception as e:
            response = _search_error(e)
            status = response.status_code
            yield _sse(json.loads(bytes(response.body)))
        finally:
            seconds = time.monotonic() - start if status == 200 else None
            self.service.metrics.request(endpoint, job.model, status, seconds)
        yield "data: [DONE]\n\n"


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _search_error(error: Exception) -> JSONResponse:
    if isinstance(error, BudgetExceededError):
        return _error(
            400,
            f"{error}: the limit ended the search before it committed one step; raise "
            "max_tokens (it counts every token the search generates, over all candidates)",
        )
    if isinstance(error, ContextOverflowError):
        return _error(400, str(error))
    if isinstance(error, SpecsError):
        log.warning("search failed: %s", terminal_safe(str(error)))
        return _error(500, f"the search failed: {error}", "server_error")
    log.exception("search failed")
    return _error(500, f"the search failed: unexpected {type(error).__name__}", "server_error")


def _delta(content: str, first: bool, chat: bool, reasoning: str = "") -> dict[str, Any] | str:
    """A chunk's delta (chat) or text (completions). A step that is not yet the answer goes in
    ``reasoning_content``, the field reasoning models' servers (DeepSeek's API, vLLM's and
    SGLang's reasoning parsers) use for thinking that precedes the answer."""
    if not chat:
        return content
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if reasoning:
        delta["reasoning_content"] = reasoning
    else:
        delta["content"] = content
    return delta


def _chunk(
    ident: str,
    created: int,
    job: SearchJob,
    delta: dict[str, Any] | str,
    finish: str | None,
    chat: bool,
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    if chat:
        choice["delta"] = delta
    else:
        choice["text"] = delta
    return {
        "id": ident,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": job.model,
        "choices": [choice],
    }


def _completion(job: SearchJob, outcome: AnswerEnd, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": outcome.finish_reason, "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": outcome.text}
    else:
        choice["text"] = outcome.text
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": job.model,
        "choices": [choice],
        "usage": openai_usage(outcome.result),
        "specs": search_summary(outcome.result),
    }


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, allow_nan=False, separators=(',', ':'))}\n\n"


def create_app(service: SearchService, *, api_key: str | None = None) -> Starlette:
    """The ASGI application serving ``service``.

    Args:
        service: the served configuration (closed when the application shuts down).
        api_key: the key clients must send as ``Authorization: Bearer KEY`` (``None``: no
            authentication). Never logged.
    """
    api = _Api(service, api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/metrics", api.guarded(api.metrics), methods=["GET"]),
        Route("/v1/models", api.guarded(api.models), methods=["GET"]),
        Route("/v1/models/{model:path}", api.guarded(api.model), methods=["GET"]),
        Route("/v1/chat/completions", api.guarded(api.chat), methods=["POST"]),
        Route("/v1/completions", api.guarded(api.completions), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
