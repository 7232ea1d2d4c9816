"""An example search-policy plugin for specs: a draft-then-target cascade."""

from specs_cascade_policy.policy import CascadeOptions, CascadePolicy

__all__ = ["CascadeOptions", "CascadePolicy"]
