"""Writing a whole file so that a reader, or a crash, sees the old file or the new one, never half.

Every file imitate writes in place (checkpoints, run states, stores, caches, curves) goes through
``replaced_on_success``: the content is written under a temporary name beside the file
(``.NAME.tmpPID.SUFFIX``) and renamed onto it (atomic on POSIX) only when the writing succeeded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def replaced_on_success(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside path to write the whole file under: renamed onto path when the
    block succeeds, deleted when it fails.  Temporaries of path left by killed processes are
    removed first."""
    path = Path(path)
    prefix = f".{path.name}.tmp"
    for stale in path.parent.glob(f"{prefix}*"):
        pid = stale.name[len(prefix):].removesuffix(path.suffix)
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    # the file's own suffix kept at the end: writers that choose a format by it (video) still can
    tmp = path.with_name(f"{prefix}{os.getpid()}{path.suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    with replaced_on_success(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with replaced_on_success(path) as tmp:
        tmp.write_bytes(data)
