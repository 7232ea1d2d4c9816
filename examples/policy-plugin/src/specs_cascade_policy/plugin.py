"""The plugin module named by the ``specs`` entry point: one hook, one policy."""

from __future__ import annotations

from typing import Any

from specs_core import hookimpl

from specs_cascade_policy.policy import CascadeOptions, CascadePolicy


def _build(options: CascadeOptions, roles: Any) -> CascadePolicy:
    return CascadePolicy(options, roles, name="cascade")


@hookimpl
def register_policies(register: Any) -> None:
    """Register the ``cascade`` policy."""
    register(
        "cascade",
        _build,
        options=CascadeOptions,
        roles=("draft", "target", "reward"),
        description="draft whole solutions; the target only when no draft earns the threshold",
    )
