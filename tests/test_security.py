"""Security over real HTTP: encryption, headers on every request, least privilege, auth failures.

A recording proxy (tests/servers.py) sits between the handler and moto, because moto does
not enforce ``ExpectedBucketOwner``; a second moto process with IAM enforcement proves the
policy from ``iam_policy()`` is all the handler needs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import free_port, read_objects, wait_until
from servers import FaultProxy, SeenRequest, s3_error

from s3_log_handler import S3Handler
from s3_log_handler._iam import iam_policy
from s3_log_handler.counters import balance

OWNER = "111122223333"
Injector = Callable[[SeenRequest], tuple[int, bytes] | None]


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A recording, fault-injecting proxy in front of the session's moto server."""
    p = FaultProxy(moto_endpoint).start()
    yield p
    p.stop()


def emit(logger: logging.Logger, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        logger.info("Session analytics data", extra={"analytics_data": {
            "session_id": f"rm_{i:04d}", "user_email": f"u{i}@example.com"}})


def attach(logger: logging.Logger, bucket: str, endpoint: str, **options: Any) -> S3Handler:
    handler = S3Handler(bucket, endpoint_url=endpoint, **options)
    logger.addHandler(handler)
    return handler


def fail_first(count: int, status: int, code: str) -> Injector:
    """Answer the first ``count`` object PUTs with an S3 error, then forward everything."""
    lock, left = threading.Lock(), [count]

    def inject(request: SeenRequest) -> tuple[int, bytes] | None:
        with lock:
            if request.method != "PUT" or left[0] <= 0:
                return None
            left[0] -= 1
        return status, s3_error(code)

    return inject


def crc32_header(body: bytes) -> str:
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


class TestEncryption:
    def test_sse_s3_is_visible_on_head_object(self, s3: Any, bucket: str, moto_endpoint: str,
                                              analytics_logger: logging.Logger) -> None:
        """sse='AES256' objects report ServerSideEncryption=AES256."""
        handler = attach(analytics_logger, bucket, moto_endpoint, sse="AES256")
        emit(analytics_logger, 2)
        assert handler.flush(30)
        for key in read_objects(s3, bucket):
            assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"

    def test_sse_kms_names_the_key_on_head_object(self, s3: Any, bucket: str,
                                                  moto_endpoint: str,
                                                  analytics_logger: logging.Logger) -> None:
        """sse='aws:kms' with a (moto) KMS key ARN: the object names that key."""
        kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
        key_arn = kms.create_key(Description="s3-log-handler test")["KeyMetadata"]["Arn"]
        handler = attach(analytics_logger, bucket, moto_endpoint, sse="aws:kms",
                         sse_kms_key_id=key_arn)
        emit(analytics_logger, 2)
        assert handler.flush(30)
        for key in read_objects(s3, bucket):
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)

    def test_storage_class_applies_and_no_acl_is_sent_by_default(
            self, s3: Any, bucket: str, proxy: FaultProxy,
            analytics_logger: logging.Logger) -> None:
        """storage_class reaches the object; without acl= no x-amz-acl header is sent."""
        handler = attach(analytics_logger, bucket, proxy.endpoint, storage_class="STANDARD_IA")
        emit(analytics_logger, 2)
        assert handler.flush(30)
        for key in read_objects(s3, bucket):
            assert s3.head_object(Bucket=bucket, Key=key)["StorageClass"] == "STANDARD_IA"
        assert proxy.seen and all("x-amz-acl" not in r.headers for r in proxy.seen)


class TestEveryRequest:
    @pytest.mark.parametrize("mode", ["object", "batch"])
    def test_bucket_owner_and_crc32_are_on_every_request_including_retries(
            self, s3: Any, bucket: str, proxy: FaultProxy, mode: str,
            analytics_logger: logging.Logger) -> None:
        """Every PUT, retried ones too, carries ExpectedBucketOwner and a correct CRC32."""
        proxy.inject = fail_first(3, 503, "SlowDown")
        handler = attach(analytics_logger, bucket, proxy.endpoint, mode=mode,
                         expected_bucket_owner=OWNER, retry_base=0.05, max_batch_records=4)
        emit(analytics_logger, 10)
        assert handler.flush(30)
        stored = {f"/{bucket}/{k}": v for k, v in raw_objects(s3, bucket).items()}
        assert len(proxy.seen) >= len(stored) + 3
        for request in proxy.seen:
            assert request.headers.get("x-amz-expected-bucket-owner") == OWNER
            assert request.headers.get("x-amz-sdk-checksum-algorithm") == "CRC32"
            assert ("x-amz-checksum-crc32" in request.headers
                    or request.headers.get("x-amz-trailer") == "x-amz-checksum-crc32")
        last_put = {r.path.replace("%3D", "="): r for r in proxy.seen}
        for path, body in stored.items():
            assert last_put[path].headers["x-amz-checksum-crc32"] == crc32_header(body)

    def test_sha256_checksum_is_sent_when_chosen(self, bucket: str, proxy: FaultProxy,
                                                 analytics_logger: logging.Logger) -> None:
        """checksum_algorithm='SHA256' switches the flexible checksum header."""
        handler = attach(analytics_logger, bucket, proxy.endpoint, checksum_algorithm="SHA256")
        emit(analytics_logger, 2)
        assert handler.flush(30)
        assert proxy.seen and all("x-amz-checksum-sha256" in r.headers for r in proxy.seen)


class TestSecuritySettings:
    def test_acl_is_sent_only_when_asked_for(self, bucket: str, proxy: FaultProxy,
                                             analytics_logger: logging.Logger) -> None:
        """acl='bucket-owner-full-control' adds x-amz-acl (buckets enforcing owner reject it)."""
        handler = attach(analytics_logger, bucket, proxy.endpoint,
                         acl="bucket-owner-full-control")
        emit(analytics_logger, 1)
        assert handler.flush(30)
        assert [r.headers.get("x-amz-acl") for r in proxy.seen] == ["bucket-owner-full-control"]

    @pytest.mark.parametrize(("options", "match"), [
        ({"checksum_algorithm": "MD5"}, "checksum_algorithm"),
        ({"sse": "aws:kms:dsse"}, "sse"),
        ({"sse_kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/k"}, "sse_kms_key_id"),
        ({"sse": "AES256", "sse_kms_key_id": "arn:aws:kms:us-east-1:1:key/k"}, "sse_kms_key_id"),
    ])
    def test_settings_s3_would_reject_fail_at_construction(self, options: dict[str, Any],
                                                           match: str) -> None:
        """Settings that would fail every upload raise ValueError before any record is lost."""
        with pytest.raises(ValueError, match=match):
            S3Handler("bkt", **options)


def raw_objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object's stored bytes (still compressed), keyed by key."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


class TestLeastPrivilege:
    @pytest.mark.parametrize("mode", ["object", "batch"])
    def test_handler_sends_nothing_but_put_object_under_its_prefix(
            self, s3: Any, bucket: str, proxy: FaultProxy, mode: str, tmp_path: Path,
            analytics_logger: logging.Logger) -> None:
        """No HEAD/GET/List/CreateBucket or sub-resource: only PUTs of keys under the prefix."""
        handler = attach(analytics_logger, bucket, proxy.endpoint, mode=mode,
                         spool_dir=str(tmp_path / "spool"), max_batch_records=5)
        emit(analytics_logger, 12)
        assert handler.flush(30)
        handler.close()
        assert proxy.seen
        for request in proxy.seen:
            assert request.method == "PUT"
            assert request.path.startswith(f"/{bucket}/sessions/")
            assert "?" not in request.path  # no ?uploads, ?acl, ?tagging, ?list-type
        assert len(proxy.seen) == len(raw_objects(s3, bucket))

    def test_iam_policy_is_sufficient_and_denies_reads_lists_and_other_prefixes(
            self, enforcing_moto: str, monkeypatch: pytest.MonkeyPatch,
            analytics_logger: logging.Logger) -> None:
        """With IAM enforced, a user holding only iam_policy() delivers everything and can do
        nothing else: GetObject, ListBucket and writes outside the prefix are denied."""
        admin = admin_session(enforcing_moto)
        bucket = f"lp-{uuid.uuid4().hex[:10]}"
        admin.client("s3", endpoint_url=enforcing_moto).create_bucket(Bucket=bucket)
        writer = user_with_policy(admin, enforcing_moto, "writer", iam_policy(bucket))
        credentials = writer.get_credentials()
        assert credentials is not None
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
        handler = attach(analytics_logger, bucket, enforcing_moto)
        emit(analytics_logger, 5)
        assert handler.flush(30)
        assert (handler.stats()["delivered"], handler.stats()["failed"]) == (5, 0)
        listed = admin.client("s3", endpoint_url=enforcing_moto).list_objects_v2(Bucket=bucket)
        keys = [o["Key"] for o in listed["Contents"]]
        assert len(keys) == 5
        s3w = writer.client("s3", endpoint_url=enforcing_moto)
        denied: list[Callable[[], Any]] = [
            lambda: s3w.get_object(Bucket=bucket, Key=keys[0]),
            lambda: s3w.head_object(Bucket=bucket, Key=keys[0]),
            lambda: s3w.list_objects_v2(Bucket=bucket),
            lambda: s3w.put_object(Bucket=bucket, Key="elsewhere/x.json", Body=b"{}"),
            lambda: s3w.create_bucket(Bucket=f"{bucket}-2"),
        ]
        for call in denied:
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.fixture
def enforcing_moto() -> Iterator[str]:
    """A separate moto server that enforces IAM after its first 3 (bootstrap) requests."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: port_open(port), timeout=60, interval=0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def admin_session(endpoint: str) -> boto3.Session:
    """Spend the 3 unauthenticated requests on an all-powerful user; return its session."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1")


def user_with_policy(admin: boto3.Session, endpoint: str, name: str,
                     policy: dict[str, Any]) -> boto3.Session:
    iam = admin.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="s3-log-handler",
                        PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1")


class TestAccessDenied:
    @pytest.mark.parametrize("spooled", [False, True])
    def test_access_denied_is_counted_reported_once_and_the_data_kept(
            self, s3: Any, bucket: str, proxy: FaultProxy, spooled: bool, tmp_path: Path,
            caplog: pytest.LogCaptureFixture, analytics_logger: logging.Logger) -> None:
        """403 AccessDenied: counted, reported once with a hint, nothing lost, then delivered."""
        caplog.set_level(logging.INFO, logger="s3_log_handler")
        denying = threading.Event()
        denying.set()
        proxy.inject = lambda r: ((403, s3_error("AccessDenied", "Access Denied"))
                                  if denying.is_set() and r.method == "PUT" else None)
        spool = {"spool_dir": str(tmp_path / "spool")} if spooled else {}
        handler = attach(analytics_logger, bucket, proxy.endpoint, config_error_retry=0.3,
                         **spool)
        emit(analytics_logger, 5)
        assert wait_until(lambda: handler.stats()["failed"] >= 8, timeout=30)
        stats = handler.stats()
        assert stats["queued"] + stats["spooled"] == 5
        assert (stats["delivered"], stats["dropped"], stats["dead_lettered"]) == (0, 0, 0)
        assert balance(stats) == 0
        reports = [r for r in caplog.records
                   if r.name == "s3_log_handler" and "AccessDenied" in r.getMessage()]
        assert len(reports) == 1
        assert reports[0].levelno == logging.ERROR
        assert "s3:PutObject" in reports[0].getMessage()
        assert f"arn:aws:s3:::{bucket}/sessions/*" in reports[0].getMessage()

        denying.clear()
        assert handler.flush(30)
        assert len(read_objects(s3, bucket)) == 5
        stats = handler.stats()
        assert (stats["delivered"], stats["queued"], stats["spooled"]) == (5, 0, 0)
        assert balance(stats) == 0


AKID = "AKIA" + "SENTINEL7Q2X9ZK4"
SECRET = "sentinel/Secret+" + uuid.uuid4().hex
TOKEN = "sentinel-Token-" + uuid.uuid4().hex + uuid.uuid4().hex


def leaky_error(code: str) -> bytes:
    """An S3 error body that echoes credentials the way real S3 echoes the access key id."""
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>request by {AKID} signed with {SECRET} token {TOKEN} failed</Message>"
            f"<AWSAccessKeyId>{AKID}</AWSAccessKeyId>"
            f"<CanonicalRequest>x-amz-security-token:{TOKEN}</CanonicalRequest>"
            f"<RequestId>test</RequestId></Error>").encode()


def cycling_auth_failures(codes: list[tuple[int, str]]) -> Injector:
    """Answer object PUTs with each (status, code) in turn, forever."""
    lock, count = threading.Lock(), [0]

    def inject(request: SeenRequest) -> tuple[int, bytes] | None:
        if request.method != "PUT":
            return None
        with lock:
            status, code = codes[count[0] % len(codes)]
            count[0] += 1
        return status, leaky_error(code)

    return inject


@pytest.fixture
def sentinel_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentinel credentials in the environment, where the handler's boto3 client finds them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)


def not_from_botocore(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured message except the AWS stack's own DEBUG chatter (see the README)."""
    return [r.getMessage() for r in caplog.records
            if not r.name.startswith(("botocore", "boto3", "urllib3"))]


def assert_no_sentinel(*texts: str) -> None:
    for text in texts:
        for secret in (AKID, SECRET, TOKEN):
            assert secret not in text


AUTH_FAILURES = [(403, "InvalidAccessKeyId"), (403, "SignatureDoesNotMatch"),
                 (403, "AccessDenied"), (400, "ExpiredToken")]
#: botocore retries a 503 itself (3 attempts in standard mode); then the handler backs off.
TRANSIENT = [(503, "SlowDown")] * 3


class TestCredentialHygiene:
    def test_sentinel_credentials_never_reach_logs_or_stderr(
            self, sentinel_credentials: None, bucket: str, proxy: FaultProxy,
            caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
            analytics_logger: logging.Logger) -> None:
        """Auth failures echoing the credentials, retries and close: nothing logged holds them."""
        caplog.set_level(logging.DEBUG)
        proxy.inject = cycling_auth_failures(AUTH_FAILURES + TRANSIENT)
        handler = attach(analytics_logger, bucket, proxy.endpoint, config_error_retry=0.05,
                         retry_base=0.01, retry_cap=0.05, close_timeout=0.5, workers=1)
        emit(analytics_logger, 3)
        codes = {code for _, code in AUTH_FAILURES + TRANSIENT}

        def all_reported() -> bool:
            return all(any(c in m for m in not_from_botocore(caplog)) for c in codes)

        assert wait_until(all_reported, timeout=30)
        assert any(TOKEN in h.get("x-amz-security-token", "") for h in
                   (r.headers for r in proxy.seen))  # the sentinels really were in use
        handler.close()
        ours = not_from_botocore(caplog)
        assert_no_sentinel(*ours, json.dumps(handler.stats()), repr(handler),
                           capfd.readouterr().err)

    def test_a_forked_child_that_fails_uploads_logs_no_credentials(
            self, sentinel_credentials: None, bucket: str, proxy: FaultProxy,
            caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
            analytics_logger: logging.Logger) -> None:
        """A fork child emits, fails with credential-echoing errors and exits: stderr is clean."""
        caplog.set_level(logging.DEBUG)
        proxy.inject = cycling_auth_failures(AUTH_FAILURES[:1])
        handler = attach(analytics_logger, bucket, proxy.endpoint, config_error_retry=0.05,
                         close_timeout=0.5)
        emit(analytics_logger, 1)
        assert wait_until(lambda: handler.stats()["failed"] >= 1, timeout=30)
        proxy.inject = cycling_auth_failures(AUTH_FAILURES[1:3])
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            run_child(handler, analytics_logger)
        assert wait_for_child(pid, timeout=60) == 0
        handler.close()
        err = capfd.readouterr().err
        assert "child: failed=" in err and "child: failed=0" not in err
        assert "SignatureDoesNotMatch" in err  # the child's own report reached stderr
        assert_no_sentinel(err, *not_from_botocore(caplog))


def run_child(handler: S3Handler, logger: logging.Logger) -> None:
    """The forked child: log to stderr, emit, fail, close, report its counters, exit."""
    code = 1
    try:
        stream = logging.StreamHandler(sys.stderr)
        library = logging.getLogger("s3_log_handler")
        library.addHandler(stream)
        library.setLevel(logging.DEBUG)
        emit(logger, 2, start=100)
        wait_until(lambda: handler.stats()["failed"] >= 4, timeout=20)
        handler.close()
        sys.stderr.write(f"child: failed={handler.stats()['failed']}\n")
        sys.stderr.flush()
        code = 0
    finally:
        os._exit(code)


def wait_for_child(pid: int, timeout: float) -> int:
    """The child's exit code; kills it (by pid) if it outlives ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9
