"""The plugin module named by the ``specs`` entry point: one hook, one reward model."""

from __future__ import annotations

from typing import Any

from specs_core import hookimpl

from specs_arithmetic_prm.verifier import ArithmeticOptions, ArithmeticVerifier


def _build(options: ArithmeticOptions, models: Any) -> ArithmeticVerifier:
    return ArithmeticVerifier(options)


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register the ``arithmetic`` reward model."""
    register(
        "arithmetic",
        _build,
        options=ArithmeticOptions,
        description="rule-based verifier: share of the step's equations (a op b = c) that hold",
    )
