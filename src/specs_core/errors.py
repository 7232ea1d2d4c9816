"""One small exception hierarchy.

Every error the library raises on purpose derives from :class:`SpecsError`, carries a message that
names the problem and the fix, and is shown by the CLI as one line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DISTRIBUTION",
    "BackendError",
    "BackendUnavailableError",
    "BudgetExceededError",
    "CapabilityError",
    "ConfigError",
    "ContextOverflowError",
    "InvalidInputError",
    "ModelCacheError",
    "ModelNotFoundError",
    "PluginError",
    "ProtocolError",
    "RewardError",
    "SpecsError",
    "install_hint",
    "read_utf8",
]


#: The name this project is installed under (``pip install specs-tts``); it provides the
#: ``specs_core`` package and the ``specs`` command.
DISTRIBUTION = "specs-tts"


def install_hint(extra: str) -> str:
    """The command that installs the pip extra ``extra``: ``pip install 'specs-tts[eval]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class SpecsError(Exception):
    """Base class of every error raised on purpose by specs."""


class ConfigError(SpecsError):
    """A configuration file, key or value is wrong."""


class InvalidInputError(SpecsError):
    """A question, option or argument given by the caller is not usable."""


class PluginError(SpecsError):
    """A plugin failed to load, registered something malformed, or is unknown."""


class BackendUnavailableError(SpecsError):
    """The engine behind a backend is not installed.

    Attributes:
        backend: the backend name, e.g. ``"llamacpp"``.
        extra: the pip extra that installs the engine, e.g. ``"llamacpp"``.
    """

    def __init__(self, backend: str, extra: str, reason: str = "") -> None:
        self.backend = backend
        self.extra = extra
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"backend {backend!r} is not available{detail}: install it with {install_hint(extra)}"
        )


class ModelNotFoundError(SpecsError):
    """A model file, directory, hub repository or embedded model cannot be found or verified."""


class ModelCacheError(ModelNotFoundError):
    """The model cache cannot hold a model (not a directory, read-only, or full)."""


class ContextOverflowError(SpecsError):
    """A prompt does not fit in the model's context window."""


class BudgetExceededError(ContextOverflowError):
    """A search spent its time or token budget. Searches stop on it as on a full context:
    they keep the steps committed so far (the result's ``stop_reason`` says which budget)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CapabilityError(SpecsError):
    """A backend lacks a capability that the chosen policy or call needs."""


class BackendError(SpecsError):
    """An engine or a remote server failed while serving a request."""


class ProtocolError(BackendError):
    """A server answered with something that does not follow its protocol."""


class RewardError(SpecsError):
    """A reward model returned malformed scores (wrong length, NaN, out of range)."""


def read_utf8(path: Path, what: str, error: type[SpecsError]) -> str:
    """The text of the file ``path`` (described as ``what``, e.g. ``"config file"``).

    Raises:
        error: the file is not UTF-8 text (the message names the byte and the fix).
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}); convert it to UTF-8 "
            "first, e.g. with iconv -t UTF-8"
        ) from None
