"""Test helpers for applications that log analytics through :class:`S3Handler`.

No AWS, no moto, no network: a :class:`RecordingSession` stands in for a ``boto3`` session,
and its :class:`RecordingS3Client` keeps every ``put_object`` call in memory::

    handler, sent = recording_handler()
    logging.getLogger("analytics").addHandler(handler)
    ...  # application code logs
    assert handler.flush(5)
    assert sent.records()[0]["session_id"] == "abc"
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ._handler import S3Handler

__all__ = ["RecordedPut", "RecordingS3Client", "RecordingSession", "recording_handler"]

@dataclass(frozen=True, slots=True)
class RecordedPut:
    """One successful ``put_object``: bucket, key, body bytes as sent, and every other
    argument (``ContentType``, ``ContentEncoding``, ``Metadata``, ...) in ``args``."""

    bucket: str
    key: str
    body: bytes
    args: dict[str, Any] = field(default_factory=dict)


class RecordingS3Client:
    """An in-memory S3 client: ``put_object`` only. Thread-safe.

    Successful puts are kept in order in :attr:`puts`; puts made to fail with
    :meth:`fail_next` raise ``botocore.exceptions.ClientError`` and are not kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._puts: list[RecordedPut] = []
        self._failures: list[tuple[str, int]] = []
        self.attempts = 0  #: every ``put_object`` call, failed ones included

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        """Record the put and return a minimal ``put_object``-like response.

        ``Bucket`` and ``Key`` are required; ``Body`` may be bytes, str or a readable object.
        """
        bucket, key = str(kwargs.pop("Bucket")), str(kwargs.pop("Key"))
        body = _as_bytes(kwargs.pop("Body", b""))
        with self._lock:
            self.attempts += 1
            if self._failures:
                code, status = self._failures.pop(0)
                raise ClientError({
                    "Error": {"Code": code, "Message": f"injected {code}"},
                    "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {},
                                         "RequestId": "", "HostId": "", "RetryAttempts": 0},
                }, "PutObject")
            self._puts.append(RecordedPut(bucket, key, body, kwargs))
        etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        return {"ETag": etag, "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0}}

    def fail_next(self, n: int = 1, code: str = "SlowDown", status: int = 503) -> None:
        """Make the next ``n`` puts raise ``ClientError`` with ``code`` and HTTP ``status``
        (``SlowDown``/503 is transient: the handler keeps the records and retries)."""
        with self._lock:
            self._failures.extend([(code, status)] * n)

    @property
    def puts(self) -> list[RecordedPut]:
        """A copy of the successful puts, in the order they happened."""
        with self._lock:
            return list(self._puts)

    def keys(self) -> list[str]:
        """The key of every successful put, in order."""
        return [p.key for p in self.puts]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON record sent, in put order: bodies are decompressed (gzip; zstd when
        ``zstandard`` is installed) and NDJSON batches are split into one dict per line."""
        out: list[dict[str, Any]] = []
        for put in self.puts:
            text = _decompress(put.body).decode("utf-8")
            out.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return out


class RecordingSession:
    """Duck-types ``boto3.session.Session`` for ``S3Handler(boto3_session=...)``.

    :meth:`client` returns the same :attr:`s3` client every time (so a client re-created
    after a fork still records into it); ``client_kwargs`` keeps the last call's keywords.
    """

    def __init__(self) -> None:
        self.s3 = RecordingS3Client()
        self.client_kwargs: dict[str, Any] = {}

    def client(self, service_name: str, **kwargs: Any) -> RecordingS3Client:
        """The recording S3 client; ``ValueError`` for any service other than ``"s3"``."""
        if service_name != "s3":
            msg = f"RecordingSession only provides 's3', not {service_name!r}"
            raise ValueError(msg)
        self.client_kwargs = kwargs
        return self.s3


def recording_handler(**options: Any) -> tuple[S3Handler, RecordingS3Client]:
    """An :class:`S3Handler` writing into a :class:`RecordingS3Client`, and that client.

    ``options`` are ``S3Handler`` keywords; ``bucket`` defaults to ``"test-bucket"``.
    Close the handler when done (``handler.close()``), as any handler.
    """
    session = RecordingSession()
    handler = S3Handler(bucket=options.pop("bucket", "test-bucket"), boto3_session=session,
                        **options)
    return handler, session.s3


def _as_bytes(body: Any) -> bytes:
    data = body if isinstance(body, str | bytes | bytearray | memoryview) else body.read()
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _decompress(body: bytes) -> bytes:
    if body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    if body[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic
        try:
            import zstandard
        except ImportError:
            msg = "reading zstd bodies needs zstandard: pip install 's3-analytics-handler[zstd]'"
            raise ImportError(msg) from None
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
            return bytes(reader.read())
    return body
