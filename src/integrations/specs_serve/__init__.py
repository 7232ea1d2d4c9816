"""``specs serve``: test-time scaling behind OpenAI's chat and completion endpoints.

Any OpenAI client (the ``openai`` package, LangChain's ``ChatOpenAI``, an agent framework) can
use a search policy by pointing its base URL at the server and naming the policy as the model.

Example:
    >>> from specs_core import Specs
    >>> from specs_serve import SearchService, create_app
    >>> service = SearchService(Specs.from_config("examples/configs/toy.yaml"), "toy",
    ...                         max_running=4, max_waiting=16)  # doctest: +SKIP
    >>> app = create_app(service, api_key=None)  # an ASGI app, e.g. for uvicorn.run(app)

Needs the ``serve`` extra (starlette and uvicorn); importing the package itself does not, so that
``specs serve`` can say how to install it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "Metrics",
    "QueueFullError",
    "SearchJob",
    "SearchService",
    "create_app",
]

_HOMES = {
    "ChatCompletionRequest": "specs_serve.protocol",
    "CompletionRequest": "specs_serve.protocol",
    "Metrics": "specs_serve.metrics",
    "QueueFullError": "specs_serve.service",
    "SearchJob": "specs_serve.service",
    "SearchService": "specs_serve.service",
    "create_app": "specs_serve.app",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'specs_serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
