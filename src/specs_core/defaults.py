"""The configuration used when none is given: SPECS on models embedded in registry packages.

The combination was chosen by measurement (BENCHMARKS.md, "Default configuration"): a
Qwen2.5-Coder-0.5B draft, a Qwen2.5-Coder-1.5B target (same tokenizer), and the LLM judge running
on the draft model as the process reward model. Judging with the 1.5B target cost about 4x the
latency and let in drafts that lost accuracy on the problems both runs solved.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_config_data"]


def default_config_data() -> dict[str, Any]:
    """A fresh copy of the default configuration as plain data."""
    return {
        "draft": {"backend": "llamacpp", "model": "qwen2.5-coder-0.5b"},
        "target": {"backend": "llamacpp", "model": "qwen2.5-coder-1.5b"},
        "reward": {"name": "judge", "model": "draft"},
        "policy": {"name": "specs", "n": 4},
    }
