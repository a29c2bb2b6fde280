"""Segment files on disk: create one locked, lock an abandoned one, read, rewrite, fsync.

Plain file operations with no state of their own; :class:`~s3_log_handler._spool.Spool` owns
the bookkeeping and decides what a failure means. Every function may raise ``OSError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from ._records import Entry
from ._segment_lines import decode_lines, without_lines

SEGMENT_SUFFIX = ".seg"


def segment_path(directory: str, name: str) -> str:
    """The path of segment ``name`` in ``directory``."""
    return os.path.join(directory, name + SEGMENT_SUFFIX)


def create_locked(directory: str, name: str) -> int:
    """Create segment ``name`` and return its descriptor, exclusively ``flock``-ed before it
    is visible under its final name, so no scanner can adopt it."""
    tmp = os.path.join(directory, name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, segment_path(directory, name))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise
    return fd


def lock_abandoned(path: str) -> int | None:
    """A locked descriptor of the segment at ``path`` when its owner is gone, else ``None``
    (still locked by a live owner, or deleted meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # gone meanwhile, or out of descriptors: try again next round
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # deleted by its owner between listdir and lock
        os.close(fd)
        return None
    return fd


def read_lines(path: str) -> list[tuple[int, Entry | None]]:
    """Every line of the segment at ``path`` as ``(index, entry)``; ``None`` for a torn one."""
    with open(path, "rb") as f:
        data = f.read()
    return list(decode_lines(data))


def rewrite_without(path: str, indices: set[int], *, fsync: bool) -> None:
    """Replace the segment at ``path`` by a copy without the lines numbered ``indices``. The
    copy is created ``0600`` and never through a symlink planted at its name."""
    tmp = path.removesuffix(SEGMENT_SUFFIX) + ".compact"
    try:
        with open(path, "rb") as f:
            kept = without_lines(f.read(), indices)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with open(fd, "wb") as f:
            f.write(kept)
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise


def fsync_directory(path: str) -> None:
    """Make the names in directory ``path`` (a new segment's) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
