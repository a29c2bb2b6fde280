"""The handler's spool, built from its settings: or none, with one ERROR saying why."""

from __future__ import annotations

import logging

from ._diagnostics import Reports
from ._settings import HandlerConfig
from ._spool import Spool
from ._spool_dir import UnsafeSpoolDir, report_refusal, resolve_spool_dir
from ._spool_meta import put_settings
from ._spool_trust import KeyCheck, spool_mac_key


def open_spool(c: HandlerConfig, suffix: str, reports: Reports) -> Spool | None:
    """The spool in ``c.spool_dir`` (``"auto"``: the default private directory) for a
    handler whose objects end in ``suffix``, or ``None`` when none is set, or with one
    ERROR when it cannot be used or is not ours (records then flow in memory only)."""
    if not (c.spool_dir and c.enabled):
        return None
    directory = c.spool_dir
    try:
        directory = resolve_spool_dir(c.spool_dir, c.bucket or "")
        return Spool(directory, c.spool_fsync, reports,
                     mac_key=spool_mac_key(c.spool_hmac_key),
                     key_check=KeyCheck(c.key_template, c.prefix, ".json" + suffix, c.mode),
                     max_bytes=c.max_spool_bytes,
                     max_dead_letter_bytes=c.max_dead_letter_bytes, put=put_settings(c))
    except UnsafeSpoolDir as exc:  # not ours: never read nor write there
        report_refusal(reports, directory, str(exc))
        return None
    except OSError as exc:  # fail safe: records still flow, in memory only
        reports.report("spool-open", logging.ERROR,
                       "cannot use spool_dir %s (%s); records are held in memory only",
                       directory, exc)
        return None
