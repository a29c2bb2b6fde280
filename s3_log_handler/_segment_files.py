"""Segment files on disk: create one locked, lock an abandoned one, read, rewrite, fsync.

Plain file operations with no state of their own; :class:`~s3_log_handler._spool.Spool` owns
the bookkeeping and decides what a failure means. Every function may raise ``OSError``.

No file is opened through a symlink (``O_NOFOLLOW``), a new one is created ``0600`` and
never over an existing name, and only regular files owned by this process's effective uid
are adopted or read (``O_NONBLOCK`` on those opens: a FIFO planted under a segment's name
cannot hang the reader).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import uuid
from collections.abc import Container

from ._segment_lines import Line, check_lines, split_settings, without_lines

SEGMENT_SUFFIX = ".seg"
#: Temporary files of a compaction: ``<segment>.<random>.compact``, never a guessable name.
COMPACT_SUFFIX = ".compact"
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: How much of a segment :func:`read_settings` reads to find its settings line.
_SETTINGS_BYTES = 16 * 1024


class ForeignFile(OSError):
    """A file under a segment's name that is not ours to adopt (a symlink, not a regular
    file, or owned by another uid); ``str(exc)`` says which."""


def segment_path(directory: str, name: str) -> str:
    """The path of segment ``name`` in ``directory``."""
    return os.path.join(directory, name + SEGMENT_SUFFIX)


def create_locked(directory: str, name: str, first_line: bytes = b"") -> int:
    """Create segment ``name`` holding ``first_line`` (its settings line) and return its
    descriptor, exclusively ``flock``-ed before it is visible under its final name, so no
    scanner can adopt it (nor read it without that line)."""
    tmp = os.path.join(directory, name + ".tmp")
    fd = os.open(tmp, _CREATE | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.fchmod(fd, 0o600)
        _write_all(fd, first_line, tmp)
        os.rename(tmp, segment_path(directory, name))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise
    return fd


def lock_abandoned(path: str) -> int | None:
    """A locked descriptor of the segment at ``path`` when its owner is gone, else ``None``
    (still locked by a live owner, or deleted meanwhile). Raises :class:`ForeignFile` when
    the file there is not ours to adopt."""
    try:
        fd = os.open(path, _READ)
    except OSError as exc:  # gone meanwhile, or out of descriptors: try again next round
        if exc.errno == errno.ELOOP:
            raise ForeignFile(errno.ELOOP, "a symbolic link, not a segment", path) from None
        return None
    try:
        _check_ours(fd, path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ForeignFile:
        os.close(fd)
        raise
    except OSError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # deleted by its owner between listdir and lock
        os.close(fd)
        return None
    return fd


def read_lines(path: str, held: int, mac_key: bytes | None = None) -> list[Line]:
    """Every record line of the segment at ``path`` as ``(index, entry, problem)`` (see
    :func:`~s3_log_handler._segment_lines.check_lines`). ``held`` is the descriptor the
    spool holds (and locks) for it: a file at ``path`` that is not that one is refused."""
    return read_segment(path, held, mac_key)[1]


def read_segment(path: str, held: int, mac_key: bytes | None = None) -> (
    tuple[dict[str, str] | None, list[Line], int]
):
    """:func:`read_lines`, with the put settings the segment records (``None``: no settings
    line) and its size in bytes."""
    data = _read_held(path, held)
    settings, _ = split_settings(data)
    return settings, list(check_lines(data, mac_key)), len(data)


def read_settings(path: str) -> dict[str, str] | None:
    """The put settings the segment at ``path`` records, without locking it (``replay``
    checks them before it starts); ``None`` for a segment without a settings line, and for
    a file that is not ours to read (adoption refuses it anyway)."""
    try:
        fd = os.open(path, _READ)
    except OSError:
        return None
    try:
        _check_ours(fd, path)
        start = os.read(fd, _SETTINGS_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return split_settings(start)[0]


def rewrite_without(path: str, indices: Container[int], held: int, *, fsync: bool) -> int:
    """Replace the segment at ``path`` (held open as ``held``) by a copy without the record
    lines numbered ``indices``; return the copy's size.

    The copy goes to a new file under a random name (``O_EXCL | O_NOFOLLOW``: never over an
    existing file nor through a symlink planted there), is set ``0600`` whatever the umask,
    written, fsynced and then renamed over the segment."""
    tmp = f"{path.removesuffix(SEGMENT_SUFFIX)}.{uuid.uuid4().hex}{COMPACT_SUFFIX}"
    kept = without_lines(_read_held(path, held), indices)
    fd = os.open(tmp, _CREATE, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, kept, tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_directory(os.path.dirname(path) or ".")
    return len(kept)


def fsync_directory(path: str) -> None:
    """Make the names in directory ``path`` (a new segment's) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_held(path: str, held: int) -> bytes:
    """The bytes of the file at ``path``, which must be the very file ``held`` is open on."""
    fd = os.open(path, _READ)
    owned = False  # once open() has it, closing the file closes the descriptor
    try:
        mine, there = os.fstat(held), os.fstat(fd)
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            raise ForeignFile(errno.ESTALE, "replaced by another file since it was locked", path)
        with open(fd, "rb") as f:
            owned = True
            return f.read()
    finally:
        if not owned:
            os.close(fd)


def _write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "short write", path)
        view = view[written:]


def _check_ours(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ForeignFile(errno.EPERM, "not a regular file", path)
    if st.st_uid != os.geteuid():
        raise ForeignFile(errno.EPERM, f"owned by uid {st.st_uid}, not by this process "
                          f"(euid {os.geteuid()})", path)
