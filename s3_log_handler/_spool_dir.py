"""Where the spool lives, and whether it is ours: the default private directory, the
directories the library creates (``0700``), and the checks made at start and before every
adoption.

A spool holds the same PII as the bucket, and whatever it holds is uploaded with the app's
own credentials. So a spool directory (and its ``dead/``) is used only when it is a real
directory (not a symlink), owned by this process's effective uid and not writable by group
or others. Anything else is refused with a sentence that says why and how to fix it.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import tempfile
from collections.abc import Mapping

from ._diagnostics import Reports
from ._keys import sanitize_id

#: The ``spool_dir`` value that means "the default private directory" (``logging.yaml``
#: ships ``spool_dir: "${ANALYTICS_SPOOL_DIR:-auto}"``).
AUTO = "auto"
#: The application directory under the XDG state directory, or (suffixed with the uid)
#: under the temp directory.
APP_DIR = "s3-analytics"


class UnsafeSpoolDir(OSError):
    """The spool directory is not ours; ``str(exc)`` says why and how to fix it."""


def resolve_spool_dir(setting: str, bucket: str, environ: Mapping[str, str] | None = None) -> str:
    """The directory the spool uses for ``setting``: itself, or for :data:`AUTO` the default
    private directory for ``bucket`` (see :func:`default_spool_dir`)."""
    return default_spool_dir(bucket, environ) if setting == AUTO else setting


def default_spool_dir(bucket: str, environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/s3-analytics/<bucket>`` (default ``~/.local/state/...``), or when
    that cannot be created or written, ``<tempdir>/s3-analytics-<euid>/<bucket>``.

    Creates the application directory (``0700``) and checks it is ours; raises
    :class:`UnsafeSpoolDir` when it is not (another user created it first), ``OSError``
    when not even the temp directory can hold it.
    """
    env = os.environ if environ is None else environ
    name = sanitize_id(bucket)
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG spec: a relative value is ignored
        home = os.path.expanduser("~")
        state = os.path.join(home, ".local", "state") if os.path.isabs(home) else ""
    if state:
        base = os.path.join(state, APP_DIR)
        try:
            make_private_dirs(base)
        except OSError:
            pass  # the home is not writable (read-only, another user's, none): temp dir
        else:
            if os.access(base, os.W_OK | os.X_OK):
                _refuse_unless_ours(base)
                return os.path.join(base, name)
    base = os.path.join(tempfile.gettempdir(), f"{APP_DIR}-{os.geteuid()}")
    make_private_dirs(base)
    _refuse_unless_ours(base)
    return os.path.join(base, name)


def prepare_spool_dir(directory: str) -> str:
    """Create ``directory`` and its ``dead/`` (``0700``, whatever the umask) where missing,
    check both are ours, and return the path of ``dead/``.

    Raises :class:`UnsafeSpoolDir` when either is not ours, ``OSError`` when they cannot
    be created.
    """
    make_private_dirs(directory)
    _refuse_unless_ours(directory)  # before creating anything inside it
    dead = os.path.join(directory, "dead")
    make_private_dirs(dead)
    _refuse_unless_ours(dead)
    return dead


def spool_problem(directory: str, *, raise_io_errors: bool = False) -> str | None:
    """Why the spool in ``directory`` is not ours (the directory, or its ``dead/`` when
    present), or ``None`` when it is. Made before every adoption. With ``raise_io_errors``
    an I/O error while looking (EIO, EACCES, ...) is raised instead of being a reason."""
    problem = dir_problem(directory, raise_io_errors=raise_io_errors)
    dead = os.path.join(directory, "dead")
    if problem is None and os.path.lexists(dead):
        problem = dir_problem(dead, raise_io_errors=raise_io_errors)
    return problem


def refuse_if_not_ours(directory: str, reports: Reports) -> str | None:
    """:func:`spool_problem` for ``directory`` before an adoption; when there is one, report
    it (one ERROR: the spool switches itself off) and return it. An I/O error while looking
    is raised, not a refusal: the keeper reports it and looks again next round."""
    problem = spool_problem(directory, raise_io_errors=True)
    if problem is not None:
        report_refusal(reports, directory, problem)
    return problem


def report_refusal(reports: Reports, directory: str, problem: str) -> None:
    """The one ERROR line of a spool switched off because its directory is not ours."""
    reports.report("spool-refused", logging.ERROR,
                   "spool_dir %s refused: %s; the spool is off for this handler and records "
                   "are held in memory only (not crash-safe)", directory, problem)


def dir_problem(path: str, *, raise_io_errors: bool = False) -> str | None:
    """Why ``path`` is not a private directory of this process, with the fix; else ``None``.
    A path that is gone is a reason; another error while looking is one too, or is raised
    with ``raise_io_errors`` (it says nothing about who owns the directory)."""
    quoted = shlex.quote(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return f"{path} no longer exists; create it (mode 0700) or set spool_dir elsewhere"
    except OSError as exc:
        if raise_io_errors:
            raise
        return f"{path} cannot be examined ({exc})"
    if stat.S_ISLNK(st.st_mode):
        return (f"{path} is a symbolic link; set spool_dir to a real directory of your own "
                "(a link can be re-pointed by whoever owns it)")
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory; remove it or set spool_dir elsewhere"
    euid = os.geteuid()
    if st.st_uid != euid:
        return (f"{path} is owned by uid {st.st_uid}, not by this process (euid {euid}); fix: "
                f"`chown {euid} {quoted} && chmod 700 {quoted}`, or use a directory of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                           if st.st_mode & bit)
        return (f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}); fix: "
                f"`chmod 700 {quoted}`")
    return None


def make_private_dirs(path: str) -> None:
    """Create every missing directory of ``path`` as ``0700`` (set explicitly, so a
    permissive umask cannot widen it). Existing directories are left as they are."""
    missing: list[str] = []
    head = os.path.abspath(path)
    while not os.path.lexists(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # a sibling process made it meanwhile: checked by the caller
            continue
        os.chmod(directory, 0o700)


def _refuse_unless_ours(path: str) -> None:
    problem = dir_problem(path)
    if problem is not None:
        raise UnsafeSpoolDir(problem)
