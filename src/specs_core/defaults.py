"""The configuration used when none is given: SPECS on models embedded in registry packages.

The combination was chosen by measurement (BENCHMARKS.md, "Default configuration" and
"Verifiers"): a Qwen2.5-Coder-0.5B draft, a Qwen2.5-Coder-1.5B target (same tokenizer), and the
``likelihood`` reward model on the target. On the target's own GSM8K solutions it separates right
from wrong with a solution AUC of 0.79 where the LLM judge on the draft (the earlier default)
gives 0.36, and inside SPECS it costs no model call: it reads the log-probabilities the target
already computed to generate or verify a step.

``tau_sw`` and ``tau_acc`` were fitted by ``specs calibrate`` to that reward model's scores in
traced runs on 10 GSM8K training problems (disjoint from every evaluation subset; ids in
``benchmarks/results/verifiers/gsm8k_train.ids``): 80% of target steps switch to drafting and
60% of drafted steps pass the acceptance test (``benchmarks/results/verifiers/calibrated.yaml``).
The authors' 0.7 and 7 were set for a trained PRM's scores, not for these.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_config_data"]


def default_config_data() -> dict[str, Any]:
    """A fresh copy of the default configuration as plain data."""
    return {
        "draft": {"backend": "llamacpp", "model": "qwen2.5-coder-0.5b"},
        "target": {"backend": "llamacpp", "model": "qwen2.5-coder-1.5b"},
        "reward": {"name": "likelihood", "model": "target"},
        "policy": {"name": "specs", "n": 4, "tau_sw": 0.77, "tau_acc": 6.3},
    }
