"""Registers the built-in search policies through the ``register_policies`` hook.

Each policy declares the roles it needs; the :class:`~specs_core.solver.Specs` facade builds only
those, so a configuration without a draft model still runs every target-only policy. Policies
that may run on either model take a ``model`` option and come in two registrations: ``<policy>``
(declares the target) and ``draft_<policy>`` (declares the draft).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from specs_core.errors import ConfigError
from specs_core.hookspecs import hookimpl
from specs_core.plugins import RegisterPolicy
from specs_core.protocols import Policy, Roles

from .beam_search import BeamSearchOptions, BeamSearchPolicy, DraftBeamSearchOptions
from .best_of_n import BestOfNOptions, BestOfNPolicy, DraftBestOfNOptions
from .greedy import DraftGreedyOptions, GreedyOptions, GreedyPolicy
from .majority import DraftMajorityOptions, MajorityOptions, MajorityPolicy
from .rsd import RsdOptions, RsdPolicy
from .specs import SpecsOptions, SpecsPolicy

__all__ = ["register_policies"]


def _single_model(
    name: str, policy: Callable[..., Policy], role: str, other: str
) -> Callable[[Any, Roles], Policy]:
    """A factory for a policy with a ``model`` option, registered with the ``role`` model only."""

    def factory(options: Any, roles: Roles) -> Policy:
        chosen = options.model
        if chosen != role and getattr(roles, chosen) is None:
            raise ConfigError(
                f"policy {name!r} was given model={chosen!r}, but it runs on the {role} model; "
                f"use policy {other!r} to run it on the {chosen} model"
            )
        return policy(options, roles, name=name)

    return factory


@dataclass(frozen=True)
class _Baseline:
    name: str
    policy: Callable[..., Policy]
    options: type[BaseModel]
    draft_options: type[BaseModel]
    needs_reward: bool
    description: str


_BASELINES = (
    _Baseline(
        "beam_search",
        BeamSearchPolicy,
        BeamSearchOptions,
        DraftBeamSearchOptions,
        True,
        "step-level beam search ranked by the reward model (m=1: the paper's baseline)",
    ),
    _Baseline(
        "best_of_n",
        BestOfNPolicy,
        BestOfNOptions,
        DraftBestOfNOptions,
        True,
        "n whole solutions ranked by aggregated step rewards (or weighted majority)",
    ),
    _Baseline(
        "majority",
        MajorityPolicy,
        MajorityOptions,
        DraftMajorityOptions,
        False,
        "n whole solutions, majority vote of their answers; no reward model",
    ),
    _Baseline(
        "greedy",
        GreedyPolicy,
        GreedyOptions,
        DraftGreedyOptions,
        False,
        "one greedy solution; no reward model",
    ),
)


@hookimpl
def register_policies(register: RegisterPolicy) -> None:
    """Register specs, rsd, and the target and draft variants of the single-model baselines."""
    register(
        "specs",
        lambda options, roles: SpecsPolicy(options, roles, name="specs"),
        options=SpecsOptions,
        roles=("target", "draft", "reward"),
        description="SPECS: drafts verified by target log-probs and the reward model",
    )
    register(
        "rsd",
        lambda options, roles: RsdPolicy(options, roles, name="rsd"),
        options=RsdOptions,
        roles=("target", "draft", "reward"),
        description="reward-guided speculative decoding: a draft step kept when reward >= delta",
    )
    for b in _BASELINES:
        reward = ("reward",) if b.needs_reward else ()
        draft_name = f"draft_{b.name}"
        register(
            b.name,
            _single_model(b.name, b.policy, "target", draft_name),
            options=b.options,
            roles=("target", *reward),
            description=f"{b.description}; target model",
        )
        register(
            draft_name,
            _single_model(draft_name, b.policy, "draft", b.name),
            options=b.draft_options,
            roles=("draft", *reward),
            description=f"{b.description}; draft model",
        )
