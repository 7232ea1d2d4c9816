"""Search policies: pure logic over the model and reward protocols, one module per policy.

- :mod:`~specs_core.policies.specs`: SPECS (draft steps soft-verified by target and reward model)
- :mod:`~specs_core.policies.beam_search`: reward-ranked step-level beam search
- :mod:`~specs_core.policies.best_of_n`: best-of-N by aggregated step rewards or weighted majority
- :mod:`~specs_core.policies.rsd`: reward-guided speculative decoding
- :mod:`~specs_core.policies.majority`: majority vote of answers
- :mod:`~specs_core.policies.greedy`: one greedy solution

They register through :mod:`specs_core.policies.plugin` like any third-party policy.
"""

from __future__ import annotations

from specs_core.search import PolicyOptions, SolutionOptions, StepSearchOptions

from .beam_search import BeamSearchOptions, BeamSearchPolicy, DraftBeamSearchOptions
from .best_of_n import BestOfNOptions, BestOfNPolicy, DraftBestOfNOptions, weighted_majority
from .greedy import DraftGreedyOptions, GreedyOptions, GreedyPolicy
from .majority import DraftMajorityOptions, MajorityOptions, MajorityPolicy, majority_vote
from .rsd import RsdOptions, RsdPolicy
from .specs import SpecsOptions, SpecsPolicy, softmax_choice

__all__ = [
    "BeamSearchOptions",
    "BeamSearchPolicy",
    "BestOfNOptions",
    "BestOfNPolicy",
    "DraftBeamSearchOptions",
    "DraftBestOfNOptions",
    "DraftGreedyOptions",
    "DraftMajorityOptions",
    "GreedyOptions",
    "GreedyPolicy",
    "MajorityOptions",
    "MajorityPolicy",
    "PolicyOptions",
    "RsdOptions",
    "RsdPolicy",
    "SolutionOptions",
    "SpecsOptions",
    "SpecsPolicy",
    "StepSearchOptions",
    "majority_vote",
    "softmax_choice",
    "weighted_majority",
]
