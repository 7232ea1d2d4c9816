"""The configuration used when none is given: SPECS on models embedded in registry packages.

The combination was chosen by measurement (see BENCHMARKS.md): a Qwen2.5-Coder-0.5B draft, a
Qwen2.5-Coder-1.5B target, and the LLM judge on the target as the process reward model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_config_data"]


def default_config_data() -> dict[str, Any]:
    """A fresh copy of the default configuration as plain data."""
    return {
        "draft": {"backend": "llamacpp", "model": "qwen2.5-coder-0.5b"},
        "target": {"backend": "llamacpp", "model": "qwen2.5-coder-1.5b"},
        "reward": {"name": "judge", "model": "target"},
        "policy": {"name": "specs", "n": 4},
    }
