"""A probe reward model: a logistic value head on a model's final hidden state at each step end.

The reward of a partial solution is ``sigmoid(w . (h - mean) / scale + b)``, where ``h`` is the
final hidden state (after the last norm) that the reading model computes at the last token of
the newest step as written (its delimiter included), with the question and the earlier steps
before it, rendered as the policies render them for generation. ``w``, ``b`` and the
normalisation come from a small JSON artifact trained by ``specs rewards train`` on solutions
labelled right or wrong (each step labelled with its solution's outcome). The artifact records
the sha256 of the weights file it was trained on; a probe refuses to read another model's hidden
states (they would mean nothing to it).

Needs a backend that implements :class:`~specs_core.protocols.HiddenStateReader` (llama.cpp)
and numpy.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from specs_core.errors import CapabilityError, ConfigError, InvalidInputError
from specs_core.hookspecs import hookimpl
from specs_core.protocols import HiddenStateReader, ModelResolver
from specs_core.text import DEFAULT_STEP_DELIMITER, DEFAULT_SYSTEM_PROMPT, partial_as_generated
from specs_core.types import Prompt

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "PROBE_FORMAT",
    "ProbeArtifact",
    "ProbeOptions",
    "ProbeRewardModel",
    "shipped_probes",
    "step_prompts",
    "train_probe",
]

PROBE_FORMAT = "specs-probe/1"
_MEMO_SIZE = 4096
_SHIPPED = "probes"


@dataclass(frozen=True)
class ProbeArtifact:
    """A trained probe: normalisation, weights, and the model it reads.

    Attributes:
        model_name: the reading model's name when it was trained.
        model_sha256: the sha256 of that model's weights file.
        mean: per-feature mean subtracted first.
        scale: per-feature scale divided by next.
        weights: the logistic weights.
        bias: the logistic bias.
        meta: how it was trained (problem ids, counts, regularisation, held-out AUC).
    """

    model_name: str
    model_sha256: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """The hidden size it reads."""
        return len(self.weights)

    @classmethod
    def load(cls, path: str | Path) -> ProbeArtifact:
        """Read an artifact written by :meth:`save`: a file, or the name of a probe shipped
        with the package (:func:`shipped_probes`).

        Raises:
            ConfigError: the file is missing, not a probe, or inconsistent.
        """
        path = _locate(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(
                f"probe artifact {str(path)!r} does not exist; name a shipped probe "
                f"({', '.join(shipped_probes()) or 'none'}) or train one with specs rewards train"
            ) from e
        except ValueError as e:
            raise ConfigError(f"probe artifact {str(path)!r} is not JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != PROBE_FORMAT:
            raise ConfigError(f"{str(path)!r} is not a {PROBE_FORMAT} probe artifact")
        try:
            artifact = cls(
                model_name=str(data["model"]["name"]),
                model_sha256=str(data["model"]["sha256"]),
                mean=tuple(float(x) for x in data["mean"]),
                scale=tuple(float(x) for x in data["scale"]),
                weights=tuple(float(x) for x in data["weights"]),
                bias=float(data["bias"]),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"probe artifact {str(path)!r} is damaged ({e})") from e
        sizes = {len(artifact.mean), len(artifact.scale), len(artifact.weights)}
        values = (*artifact.mean, *artifact.scale, *artifact.weights, artifact.bias)
        if len(sizes) != 1 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"probe artifact {str(path)!r} has inconsistent or non-finite values")
        if any(s <= 0 for s in artifact.scale):
            raise ConfigError(f"probe artifact {str(path)!r} has a non-positive scale")
        return artifact

    def save(self, path: str | Path) -> None:
        """Write the artifact as JSON (compact: floats to 7 significant digits)."""
        data = {
            "format": PROBE_FORMAT,
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "bias": float(f"{self.bias:.7g}"),
            "weights": [float(f"{x:.7g}") for x in self.weights],
            "mean": [float(f"{x:.7g}") for x in self.mean],
            "scale": [float(f"{x:.7g}") for x in self.scale],
            "meta": dict(self.meta),
        }
        Path(path).write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")

    def check_model(self, sha256: str, name: str) -> None:
        """Refuse a reading model whose weights differ from the training model's.

        Raises:
            ConfigError: naming both models and the fix.
        """
        if sha256 != self.model_sha256:
            raise ConfigError(
                f"the probe was trained on {self.model_name!r} "
                f"(sha256 {self.model_sha256[:12]}...) but would read {name!r} "
                f"(sha256 {sha256[:12]}...): hidden states of another model mean nothing to "
                "it; point reward.model at the model it was trained on, or train a probe for "
                "this one with specs rewards train"
            )

    def probabilities(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``P(correct)`` for each row of ``features``."""
        import numpy as np

        if features.ndim != 2 or features.shape[1] != self.dim:
            raise InvalidInputError(
                f"the probe reads {self.dim} features, got an array of shape {features.shape}"
            )
        z = ((features - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.weights
        ) + self.bias
        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        return result


def shipped_probes() -> list[str]:
    """The names of the probes shipped in the package (``specs_core/probes/<name>.json``)."""
    folder = Path(__file__).with_name(_SHIPPED)
    return sorted(p.stem for p in folder.glob("*.json"))


def _locate(value: str | Path) -> Path:
    """A file that exists, else the shipped probe of that name, else the path as given."""
    path = Path(value)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = Path(__file__).with_name(_SHIPPED) / f"{path.name}.json"
    return shipped if shipped.is_file() else path


def step_prompts(
    question: str, steps: Sequence[str], system: str | None, delimiter: str
) -> list[Prompt]:
    """The prompt ending with each step: the question, then the steps up to it as they were
    written (:func:`~specs_core.text.as_generated`: each followed by the delimiter, the one
    stating the final answer by nothing), as the policies render a partial solution."""
    prompts = []
    for j in range(len(steps)):
        partial = partial_as_generated(steps[: j + 1], delimiter)
        prompts.append(Prompt(question, partial, system))
    return prompts


class ProbeOptions(BaseModel):
    """Options of the ``probe`` reward model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | dict[str, Any] = Field(
        default="target",
        description="the model whose hidden states the probe reads: a role or an inline config",
    )
    artifact: str = Field(
        description="the probe's JSON file (written by specs rewards train), or the name of a "
        "probe shipped with the package"
    )
    system: str | None = Field(
        default=DEFAULT_SYSTEM_PROMPT, description="system message the steps are read under"
    )
    step_delimiter: str = Field(
        default=DEFAULT_STEP_DELIMITER, min_length=1, description="text that joins the steps"
    )


class ProbeRewardModel:
    """Rewards each step with a trained probe on the reading model's hidden state.

    Args:
        reader: the model whose hidden states the probe reads.
        artifact: the trained probe (checked against ``reader``'s weights).
        options: rendering options.

    Raises:
        CapabilityError: the model cannot return hidden states.
        ConfigError: the probe was trained on another model.
    """

    def __init__(
        self, reader: object, artifact: ProbeArtifact, options: ProbeOptions | None = None
    ) -> None:
        if not isinstance(reader, HiddenStateReader):
            name = getattr(reader, "name", type(reader).__name__)
            raise CapabilityError(
                f"model {name!r} cannot return hidden states, which the probe reward model "
                "reads; use a llama.cpp model"
            )
        artifact.check_model(reader.weights_sha256, getattr(reader, "name", "?"))
        self.reader = reader
        self.artifact = artifact
        self.options = options or ProbeOptions(artifact="")
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], float] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``probe:<model name>``."""
        return f"probe:{getattr(self.reader, 'name', '?')}"

    def _rewards(self, question: str, prefixes: Sequence[Sequence[str]]) -> list[float]:
        import numpy as np

        keys = [(question, tuple(p)) for p in prefixes]
        with self._lock:
            todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            o = self.options
            prompts = [
                step_prompts(question, list(steps), o.system, o.step_delimiter)[-1]
                for _, steps in todo
            ]
            states = np.asarray(self.reader.hidden_states(prompts), dtype=np.float64)
            values = self.artifact.probabilities(states)
            with self._lock:
                for key, value in zip(todo, values, strict=True):
                    self._memo[key] = float(value)
                while len(self._memo) > _MEMO_SIZE:
                    self._memo.popitem(last=False)
        with self._lock:
            return [self._memo[k] for k in keys]

    def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The reward after every step of every solution."""
        prefixes = [list(s[: j + 1]) for s in solutions for j in range(len(s))]
        flat = self._rewards(question, prefixes)
        out, start = [], 0
        for s in solutions:
            out.append(flat[start : start + len(s)])
            start += len(s)
        return out

    def score_last(self, question: str, solutions: Sequence[Sequence[str]]) -> list[float]:
        """The reward after the last step of each solution."""
        return self._rewards(question, [list(s) for s in solutions])

    def close(self) -> None:
        """Nothing to free: the reading model belongs to the configuration's model pool."""


# -- training -------------------------------------------------------------------------------------


def _fit_logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float
) -> tuple[npt.NDArray[np.float64], float]:
    """L2-regularised logistic regression by Newton's method (the bias is not penalised)."""
    import numpy as np

    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(50):
        z = np.clip(design @ beta, -500, 500)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = design.T @ (p - y) + penalty * beta
        w = np.maximum(p * (1 - p), 1e-9)
        hess = (design * w[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def train_probe(
    features: npt.NDArray[np.float64],
    labels: Sequence[bool],
    groups: Sequence[str],
    *,
    l2_grid: Sequence[float] = (1.0, 10.0, 100.0, 1000.0),
    folds: int = 5,
    model_name: str,
    model_sha256: str,
    meta: Mapping[str, Any] | None = None,
) -> ProbeArtifact:
    """Fit a probe: standardise the features, choose the L2 strength by cross-validation with
    problems kept whole inside folds (the held-out AUC of each strength goes to ``meta``), and
    fit on everything with the best one.

    Raises:
        InvalidInputError: fewer than two problems, or one class only.
    """
    import numpy as np

    from specs_core.eval.stats import auc

    y = np.asarray([1.0 if v else 0.0 for v in labels])
    if features.shape[0] != len(y) or len(groups) != len(y):
        raise InvalidInputError("features, labels and groups must have one row per step")
    if y.min() == y.max():
        raise InvalidInputError("training needs steps of both correct and wrong solutions")
    names = sorted(set(groups))
    if len(names) < 2:
        raise InvalidInputError("training needs at least two problems")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    x = (features - mean) / scale
    fold_of = {g: i % min(folds, len(names)) for i, g in enumerate(names)}
    fold = np.asarray([fold_of[g] for g in groups])
    held_out: dict[str, float | None] = {}
    for l2 in l2_grid:
        scores = np.zeros(len(y))
        for f in range(min(folds, len(names))):
            train, test = fold != f, fold == f
            if y[train].min() == y[train].max():
                scores[test] = 0.5
                continue
            w, b = _fit_logistic(x[train], y[train], l2)
            scores[test] = x[test] @ w + b
        held_out[str(l2)] = auc(scores.tolist(), [bool(v) for v in y])
    best = max(l2_grid, key=lambda v: held_out[str(v)] or 0.0)
    w, b = _fit_logistic(x, y, best)
    return ProbeArtifact(
        model_name=model_name,
        model_sha256=model_sha256,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in w),
        bias=b,
        meta={
            **dict(meta or {}),
            "l2": best,
            "cross_validated_step_auc": held_out,
            "steps": len(y),
            "positive_steps": int(y.sum()),
            "problems": len(names),
        },
    )


def _numpy_missing() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("numpy") else "numpy is not installed"


def _build(options: ProbeOptions, models: ModelResolver) -> ProbeRewardModel:
    return ProbeRewardModel(models(options.model), ProbeArtifact.load(options.artifact), options)


@hookimpl
def register_reward_models(register: Any) -> None:
    """Register the ``probe`` reward model."""
    register(
        "probe",
        _build,
        options=ProbeOptions,
        extra="llamacpp",
        available=_numpy_missing,
        description="a trained logistic probe on a model's hidden state at each step end "
        "(specs rewards train)",
    )
