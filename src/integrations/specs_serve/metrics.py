"""The server's metrics, written in Prometheus' text exposition format (version 0.0.4).

Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (one ``# HELP`` and
``# TYPE`` line per family; histograms as cumulative ``_bucket{le=...}`` series with ``_sum`` and
``_count``). Kept here, in a few lines, rather than as a dependency.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping

__all__ = ["LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Upper bounds (seconds) of the request latency histogram."""

_Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: _Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Metrics:
    """Counters, one latency histogram and live gauges of one server (thread-safe).

    Args:
        gauges: name -> (help, a function reading the current value), read at each scrape.
    """

    def __init__(self, gauges: Mapping[str, tuple[str, Callable[[], float]]] = {}) -> None:
        self._lock = threading.Lock()
        self._requests: dict[_Labels, int] = defaultdict(int)
        self._steps: dict[_Labels, int] = defaultdict(int)
        self._tokens: dict[_Labels, int] = defaultdict(int)
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._gauges = dict(gauges)

    def request(self, endpoint: str, model: str, status: int, seconds: float | None) -> None:
        """Count a finished request (``seconds``: its latency, when it ran a search)."""
        with self._lock:
            key = (("endpoint", endpoint), ("model", model), ("status", str(status)))
            self._requests[key] += 1
            if seconds is None:
                return
            self._latency_sum += seconds
            self._latency_count += 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self._buckets[i] += 1

    def step(self, source: str) -> None:
        """Count a committed step by the model that wrote it."""
        with self._lock:
            self._steps[(("source", source),)] += 1

    def tokens(self, model: str, generated: int) -> None:
        """Count tokens a search generated with ``model``."""
        with self._lock:
            self._tokens[(("model", model),)] += generated

    def render(self) -> str:
        """Every metric in the text exposition format."""
        lines: list[str] = []

        def counter(name: str, help_: str, values: Mapping[_Labels, int]) -> None:
            lines.extend((f"# HELP {name} {help_}", f"# TYPE {name} counter"))
            lines.extend(f"{name}{_labels(k)} {v}" for k, v in sorted(values.items()))

        with self._lock:
            counter("specs_requests_total", "Requests answered, by status.", self._requests)
            counter(
                "specs_steps_total", "Steps committed, by the model that wrote them.", self._steps
            )
            counter("specs_generated_tokens_total", "Tokens generated, by model.", self._tokens)
            name = "specs_request_latency_seconds"
            lines.extend(
                (
                    f"# HELP {name} Latency of requests that ran a search.",
                    f"# TYPE {name} histogram",
                )
            )
            for bound, count in zip(LATENCY_BUCKETS, self._buckets, strict=True):
                lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {self._latency_count}')
            lines.append(f"{name}_sum {self._latency_sum!r}")
            lines.append(f"{name}_count {self._latency_count}")
        for gauge, (help_, read) in sorted(self._gauges.items()):
            lines.extend((f"# HELP {gauge} {help_}", f"# TYPE {gauge} gauge"))
            lines.append(f"{gauge} {_number(read())}")
        return "\n".join(lines) + "\n"
