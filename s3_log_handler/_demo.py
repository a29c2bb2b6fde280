"""``s3-log-handler demo``: voice-agent sessions through logging.yaml into S3 and CloudWatch Logs.

By default both services are moto's server, embedded in this process on a free loopback port
(the ``demo`` extra); ``--real`` uses the environment's AWS settings as they are. The demo
then reads both sinks back and checks that every emitted session arrived.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ._config import ConfigError, configure, default_config
from ._demo_payloads import is_qualified, make_sessions
from ._encode import json_line
from ._handler import S3Handler
from ._keys import sanitize_id

analytics_logger = logging.getLogger("analytics")

DEMO_BUCKET = "voice-agent-analytics-demo"
DEMO_LOG_GROUP = "/voice-agent/session-analytics"
DEMO_REGION = "us-east-1"
#: Longest the demo waits for S3 to take everything, and for CloudWatch to show it (seconds).
DRAIN_TIMEOUT = 120.0
_METADATA = frozenset({"timestamp", "level", "logger", "message", "_event_type", "_session_id"})
_DROPPED_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "ANALYTICS_LOG_STREAM",
                "ANALYTICS_REDACT_FIELDS", "ANALYTICS_HASH_FIELDS", "ANALYTICS_EVENT_TYPE")


def send_to_analytics_queue(data: dict[str, Any]) -> None:
    """The application's call site, unchanged: one ordinary logging call."""
    analytics_logger.info("Session analytics data", extra={"analytics_data": data})


def run_demo(sessions: int = 200, real: bool = False) -> int:
    """Run the demo and print what a user would check.

    Returns 0 when every emitted session is in S3 and in CloudWatch Logs, 1 when one is
    missing from either, 2 when the demo cannot start (moto not installed, a bad
    ``logging.yaml``, no bucket configured).
    """
    if sessions < 1:
        print("--sessions must be at least 1", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="s3-log-handler-demo-"))
        env = {"ANALYTICS_SPOOL_DIR": spool}
        if not real:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                print("the embedded demo needs moto: pip install 's3-analytics-handler[demo]'",
                      file=sys.stderr)
                return 2
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            stack.callback(server.stop)
            host, port = server.get_host_and_port()
            env.update(_embedded_env(f"http://{host}:{port}"))
        stack.enter_context(_environment(env, drop=() if real else _DROPPED_ENV))
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
        if not real:
            _create_resources()
        return _run(sessions, real)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack may swallow, mypy asks


def _run(sessions: int, real: bool) -> int:
    source = default_config()
    # (Embedded moto shares this process's logging lock, which dictConfig holds while
    # cloudwatch_handler probes it: run_demo has just made requests, so moto's loggers do not
    # need that lock again. Across processes, as with real AWS, this never matters.)
    try:
        configure(source)
    except ConfigError as exc:
        print(f"cannot apply {source}: {exc}", file=sys.stderr)
        return 2
    handlers = list(analytics_logger.handlers)
    s3 = next((h for h in handlers if isinstance(h, S3Handler)), None)
    if s3 is None or s3.config.bucket is None:
        print(f"{source} sends the 'analytics' logger to no enabled S3Handler "
              "(is ANALYTICS_S3_BUCKET set?)", file=sys.stderr)
        return 2
    cloudwatch = next((h for h in handlers if hasattr(h, "log_group_name")), None)
    group = str(getattr(cloudwatch, "log_group_name", ""))
    print(f"config  {source}\nsinks   s3://{s3.config.bucket}/{s3.config.prefix}/ and "
          f"CloudWatch Logs {group or '(disabled)'} on {'real AWS' if real else 'embedded moto'}")

    payloads = make_sessions(sessions, id_prefix=f"rm_{uuid.uuid4().hex[:6]}_" if real else "rm_")
    started = time.time()
    latencies = _drive(payloads)
    drain_started = time.perf_counter()
    for handler in handlers:  # what logging.shutdown() does at exit, with a longer bound
        if isinstance(handler, S3Handler):
            handler.flush(DRAIN_TIMEOUT)
        else:
            handler.flush()
        handler.close()
        analytics_logger.removeHandler(handler)
    metrics = logging.getLogger("s3_log_handler.metrics")
    for handler in list(metrics.handlers):  # the S3 handler's last health line, sent now
        handler.flush()
        handler.close()
        metrics.removeHandler(handler)
    drained = time.perf_counter() - drain_started

    expected = [json_line(p).body for p in payloads]
    print("\n== S3 ==")
    s3_missing = _check_s3(s3.config.bucket, s3.config.prefix, s3.config.mode == "object",
                           payloads, expected, since=started)
    print("\n== CloudWatch Logs ==")
    if cloudwatch is None:
        print("  disabled (see the warning above): nothing can be checked there")
        cw_missing = len(payloads)
    else:
        event_type = str(getattr(cloudwatch.formatter, "event_type", "session_analytics"))
        cw_missing = _check_cloudwatch(group, event_type, expected, since=started,
                                       wait=30.0 if real else 5.0)
    p50, p99 = latency_percentiles(latencies)
    stats = s3.stats()
    print(f"\n== Caller ==\n  emit latency of analytics_logger.info (S3 + CloudWatch handlers):"
          f" p50 {p50:.0f} us, p99 {p99:.0f} us over {len(latencies)} calls\n"
          f"  (the tail is waiting for the GIL: upload threads{'' if real else ' and moto'} run in"
          f" this process; switch interval {sys.getswitchinterval() * 1e3:g} ms)\n"
          f"  drain (flush + close of both handlers): {drained:.2f} s\n"
          f"  S3Handler counters: emitted {stats['emitted']}, delivered {stats['delivered']}, "
          f"dropped {stats['dropped']}, dead-lettered {stats['dead_lettered']}, "
          f"retries {stats['retries']}")
    if s3_missing or cw_missing:
        print(f"\nFAILED: {s3_missing} sessions missing from S3, {cw_missing} from CloudWatch")
        return 1
    print(f"\nOK: all {len(payloads)} sessions are in S3 and in CloudWatch Logs")
    return 0


def _drive(payloads: list[dict[str, Any]]) -> list[float]:
    """Send every payload through the call site; each call's latency in seconds."""
    latencies: list[float] = []
    step = max(1, len(payloads) // 50)
    for index, payload in enumerate(payloads, 1):
        begin = time.perf_counter()
        send_to_analytics_queue(payload)
        latencies.append(time.perf_counter() - begin)
        if index % step == 0 or index == len(payloads):
            filled = 40 * index // len(payloads)
            sys.stderr.write(f"\r  sessions [{'#' * filled}{'.' * (40 - filled)}] "
                             f"{index}/{len(payloads)}" + ("\n" if filled == 40 else ""))
            sys.stderr.flush()
    return latencies


def _check_s3(bucket: str, prefix: str, keyed_by_id: bool, payloads: list[dict[str, Any]],
              expected: list[bytes], since: float) -> int:
    """Print what S3 holds from this run; return how many sessions are missing or misplaced."""
    import boto3

    client = boto3.client("s3", region_name=_region())
    objects: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            if item["LastModified"].timestamp() >= since - 300:  # clock skew allowance
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                objects[item["Key"]] = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    partitions = Counter(key.rsplit("/", 1)[0] for key in objects)
    for partition, count in sorted(partitions.items()):
        print(f"  {partition}/  {count} objects")
    lines = Counter(line + b"\n" for body in objects.values() for line in body.splitlines())
    by_stem = {key.rsplit("/", 1)[-1].split(".json", 1)[0]: body for key, body in objects.items()}
    missing = sum((Counter(expected) - lines).values())
    misplaced = 0
    if keyed_by_id:
        misplaced = sum(1 for p, body in zip(payloads, expected, strict=True)
                        if "session_id" in p and by_stem.get(sanitize_id(p["session_id"])) != body)
    with_id = sum(1 for p in payloads if "session_id" in p)
    print(f"  {len(payloads) - missing}/{len(payloads)} sessions found with their exact payload "
          f"bytes; {with_id - misplaced}/{with_id} with an id are under <session_id>.json.gz, "
          f"{len(payloads) - with_id} without one under gen-<uuid> keys")
    sample = next((k for k in sorted(objects) if "/rm_" in k), next(iter(objects), None))
    if sample is not None:
        print(f"  downloaded s3://{bucket}/{sample} | gunzip | jq .")
        pretty = json.dumps(json.loads(objects[sample].splitlines()[0]), indent=2)
        print("\n".join("    " + line for line in pretty.splitlines()))
    stored = [orjson.loads(line) for line in lines]
    print(f"  qualified leads (team_size >= 5 or monthly_volume >= 100) from S3 data: "
          f"{sum(map(is_qualified, stored))} (emitted: {sum(map(is_qualified, payloads))})")
    return missing + misplaced


def _check_cloudwatch(group: str, event_type: str, expected: list[bytes], since: float,
                      wait: float) -> int:
    """Print what the log group holds from this run; return how many sessions are missing."""
    import boto3

    client = boto3.client("logs", region_name=_region())
    wanted = Counter(_canonical(orjson.loads(body)) for body in expected)
    deadline = time.monotonic() + wait
    while True:  # CloudWatch makes events searchable a little after it accepts them
        events = [orjson.loads(e["message"]) for page in client.get_paginator(
            "filter_log_events").paginate(logGroupName=group, startTime=int(since * 1000) - 1000)
            for e in page.get("events", []) if e["message"].startswith("{")]
        ours = [e for e in events if e.get("_event_type") == event_type]
        found = Counter(_canonical({k: v for k, v in e.items() if k not in _METADATA})
                        for e in ours)
        missing = sum((wanted - found).values())
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    print(f"  {len(ours)} events in {group}; {len(expected) - missing}/{len(expected)} sessions "
          "found with every payload field at the top level")
    if ours:
        print(f"  one event's message:\n    {orjson.dumps(ours[0]).decode()}")
    team = [e for e in ours if (e.get("discovered_signals") or {}).get("team_size", 0) >= 5]
    print(f"  Insights (evaluated on the events' JSON, as CloudWatch would):\n"
          f"    filter _event_type = \"{event_type}\"  ->  {len(ours)} rows\n"
          f"    ... | filter discovered_signals.team_size >= 5  ->  {len(team)} rows\n"
          f"    qualified leads (team_size >= 5 or monthly_volume >= 100)  ->  "
          f"{sum(map(is_qualified, ours))} rows")
    return missing


def _canonical(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _embedded_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint,
        "AWS_ACCESS_KEY_ID": "demo-access-key", "AWS_SECRET_ACCESS_KEY": "demo-secret-key",
        "AWS_DEFAULT_REGION": DEMO_REGION, "AWS_REGION": DEMO_REGION,
        "ANALYTICS_S3_BUCKET": DEMO_BUCKET, "ANALYTICS_S3_PREFIX": "sessions",
        "ANALYTICS_LOG_GROUP": DEMO_LOG_GROUP,
    }


@contextlib.contextmanager
def _environment(values: Mapping[str, str], drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` and unset ``drop`` in ``os.environ``; restore all of them afterwards."""
    saved = {name: os.environ.get(name) for name in [*values, *drop]}
    for name in drop:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _create_resources() -> None:
    """The bucket and log group an operator creates once (this also warms moto up)."""
    import boto3

    boto3.client("s3", region_name=DEMO_REGION).create_bucket(Bucket=DEMO_BUCKET)
    boto3.client("logs", region_name=DEMO_REGION).create_log_group(logGroupName=DEMO_LOG_GROUP)


def _region() -> str | None:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None


def latency_percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``latencies`` (seconds), in microseconds."""
    if len(latencies) < 2:
        only = latencies[0] * 1e6 if latencies else 0.0
        return only, only
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1e6, cuts[98] * 1e6
