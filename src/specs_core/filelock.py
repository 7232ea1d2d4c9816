"""An exclusive, non-blocking lock on an open file, on POSIX and Windows.

The lock belongs to the open file: closing it, or the process ending however it ends, releases
it. Used for a bench run directory (one writer) and for a model being assembled (its temporary
file is removed only when no process holds it).
"""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["lock_exclusive"]


def lock_exclusive(handle: IO[Any]) -> None:
    """Lock ``handle``'s file for this process, or raise at once.

    Raises:
        OSError: another open file (in this process or another) holds the lock.
    """
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
