"""The operator's log lines: where the export goes, and each upload, on ``s3_log_handler``.

Two lines an operator greps for, in a fixed shape:

* INFO, once per handler and process, when its S3 client is made (the first upload
  attempt, on an upload thread): ``S3 export enabled: s3://BUCKET/PREFIX (region R, mode M)``.
  The region is the one the client resolved (settings, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
  profile), so a wrong one shows here before the first error does.
* DEBUG, per successful PUT: ``uploaded s3://BUCKET/KEY (N records, B bytes)``, ``B`` being
  the bytes sent (after compression). Only built when DEBUG is enabled for the logger.

Failures are reported elsewhere (:mod:`_worker`, rate-limited, each with a ``Hint:``).
"""

from __future__ import annotations

import logging
from typing import Any

from ._diagnostics import logger


def export_enabled(bucket: str, prefix: str, mode: str, client: Any,
                   fallback_region: str | None) -> None:
    """Log the INFO start-up line for a new S3 ``client``; its region is read from
    ``client.meta.region_name`` (``fallback_region``, else ``unknown``, for a client without
    one, such as a test double). Never raises."""
    try:
        region = getattr(getattr(client, "meta", None), "region_name", None)
        logger.info("S3 export enabled: s3://%s/%s (region %s, mode %s)", bucket, prefix,
                    region or fallback_region or "unknown", mode)
    except Exception:  # a line must never cost an upload
        return


def uploaded(target: str, key: str, records: int, size: int) -> None:
    """Log the DEBUG line for one successful PUT of ``records`` records in ``size`` bytes
    to ``target`` (``s3://BUCKET``)/``key``; costs one level check when DEBUG is off."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("uploaded %s/%s (%d records, %d bytes)", target, key, records, size)
