"""cloudwatch_handler: watchtower's CloudWatch Logs handler, or a NullHandler when unavailable."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import boto3
import watchtower
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ._diagnostics import logger, scrub

#: One stream per host and process: concurrent writers never share a stream.
DEFAULT_STREAM_NAME = "{machine_name}-{process_id}"
#: Seconds the start-up probe may spend connecting or waiting for an answer.
DEFAULT_PROBE_TIMEOUT = 5.0


def cloudwatch_handler(log_group_name: str | None = None, log_stream_name: str | None = None,
                       *, region_name: str | None = None, endpoint_url: str | None = None,
                       profile_name: str | None = None, create_log_group: bool = True,
                       probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
                       environ: Mapping[str, str] | None = None,
                       warn_if_disabled: bool = True,
                       **options: Any) -> logging.Handler:
    """A ``watchtower.CloudWatchLogHandler`` for ``log_group_name``, for dictConfig's ``()``.

    ``log_group_name`` falls back to ``$ANALYTICS_LOG_GROUP``; ``log_stream_name`` defaults
    to :data:`DEFAULT_STREAM_NAME` (watchtower's placeholders apply). ``region_name`` falls
    back to ``$AWS_REGION`` when ``$AWS_DEFAULT_REGION`` is unset (botocore reads only the
    latter); ``endpoint_url`` defaults to botocore's own resolution
    (``$AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, ``$AWS_ENDPOINT_URL``). Empty strings count as
    unset, so ``${VAR:-}`` in ``logging.yaml`` means "not configured". Other keyword
    arguments (``send_interval``, ``max_batch_count``, ``log_group_retention_days``, ...) go to
    watchtower.

    Before building it, one probe with a short timeout (``probe_timeout`` seconds, no
    retries) checks that CloudWatch Logs answers and creates the log group when
    ``create_log_group`` is true and the group is missing. When no log group is configured,
    or the probe fails (no endpoint, no region, no credentials, the group cannot be
    created), it returns a ``logging.NullHandler`` and logs one warning on
    ``s3_log_handler`` saying why: a development machine without CloudWatch starts normally
    and the S3 side carries on. It never raises for an unavailable CloudWatch; it does raise
    ``TypeError`` for an option watchtower does not know (a typo in ``logging.yaml``).
    ``environ`` stands in for ``os.environ`` in the two fallbacks above.
    ``warn_if_disabled=False`` drops that warning: for a second handler on the same log
    group (the health metrics' in ``logging.yaml``), whose first handler already said why.
    """
    env = os.environ if environ is None else environ
    group = log_group_name or env.get("ANALYTICS_LOG_GROUP") or None
    if group is None:
        if warn_if_disabled:
            logger.warning("CloudWatch Logs export disabled: no log group configured "
                           "(set ANALYTICS_LOG_GROUP); analytics records still go to S3")
        return logging.NullHandler()
    if not region_name and not env.get("AWS_DEFAULT_REGION"):
        region_name = env.get("AWS_REGION") or None
    try:
        session = boto3.session.Session(profile_name=profile_name or None)
        probe = session.client("logs", region_name=region_name or None,
                               endpoint_url=endpoint_url or None,
                               config=Config(connect_timeout=probe_timeout,
                                             read_timeout=probe_timeout,
                                             retries={"total_max_attempts": 1}))
        _ensure_log_group(probe, group, create_log_group)
        client = session.client("logs", region_name=region_name or None,
                                endpoint_url=endpoint_url or None,
                                config=Config(retries={"mode": "standard"}, connect_timeout=5,
                                              read_timeout=30))
        # Retention and tags are set here, over the network, when they are given.
        handler: logging.Handler = watchtower.CloudWatchLogHandler(
            log_group_name=group, log_stream_name=log_stream_name or DEFAULT_STREAM_NAME,
            boto3_client=client, create_log_group=False, **options)
        _ensure_log_stream(probe, handler, group)
    except (BotoCoreError, ClientError) as exc:
        if not warn_if_disabled:
            return logging.NullHandler()
        logger.warning("CloudWatch Logs export disabled: cannot use log group %r at start-up "
                       "(%s: %s); analytics records still go to S3", group,
                       type(exc).__name__, scrub(str(exc)))
        return logging.NullHandler()
    return handler


def _ensure_log_stream(client: Any, handler: Any, group: str) -> None:
    """Create the stream now when its name is fixed for this process.

    watchtower creates a missing stream on its first send and, meanwhile, silently discards
    every record logged (its ``creating_log_stream`` flag): at start-up that loses a burst.
    """
    template = str(handler.log_stream_name)
    if any(p in template for p in ("{thread_name}", "{logger_name}", "{strftime")):
        return
    name = handler._get_stream_name(logging.makeLogRecord({}))
    try:
        client.create_log_stream(logGroupName=group, logStreamName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {
                "ResourceAlreadyExistsException", "AccessDenied", "AccessDeniedException"}:
            raise


def _ensure_log_group(client: Any, group: str, create: bool) -> None:
    """Check that CloudWatch Logs answers; create ``group`` when asked and it is missing.

    An access-denied answer to the check proves the endpoint works: the role may be allowed
    to put events without being allowed to list groups, so that is not a failure.
    """
    try:
        found = client.describe_log_groups(logGroupNamePrefix=group, limit=50)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"AccessDenied",
                                                         "AccessDeniedException"}:
            return
        raise
    if not create or any(g.get("logGroupName") == group for g in found.get("logGroups", [])):
        return
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=group)
