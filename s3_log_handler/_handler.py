"""S3Handler: the ``logging.Handler`` that snapshots analytics records and hands them off."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from ._delivery import Delivery
from ._diagnostics import ReportOnce, is_internal_record, logger
from ._encode import EncodeError, json_line, make_codec
from ._keys import MAX_ID_CHARS, Partition, render_key, sanitize_id
from ._records import Entry
from ._redact import make_redactor
from ._settings import HandlerConfig
from ._spool import Spool
from ._uploader import S3Uploader
from ._worker import DeliveryWorker
from .counters import Counters

#: A full queue is warned about at most once per this many seconds.
_DROP_WARNING_INTERVAL = 60.0
_LIVE_HANDLERS: weakref.WeakSet[S3Handler] = weakref.WeakSet()
#: The RLock that ``dictConfig()`` holds while it closes and replaces handlers.
_LOGGING_MODULE_LOCK: Any = getattr(logging, "_lock", threading.RLock())


class S3Handler(logging.Handler):
    """Ships the payload each record carries in ``record.<attribute>`` to S3, off-thread.

    ``emit()`` serialises the payload on the caller's thread (a snapshot: later mutation
    changes nothing), writes it to the spool when one is set, and enqueues it. It never does
    network I/O and never raises; background threads batch, compress and upload.

    Keyword arguments (all optional; usable from ``dictConfig``):

    * ``bucket`` -- target bucket; default ``$ANALYTICS_S3_BUCKET``. Without one the handler
      is disabled: records are counted ``ignored`` and nothing raises.
    * ``prefix="sessions"``, ``attribute="analytics_data"``, ``id_field="session_id"``.
    * ``key_template`` -- default ``{prefix}/year={year}/month={month}/day={day}/{id}{ext}``
      (object mode) or ``...{host}-{pid}-{seq}-{uuid}{ext}`` (batch mode). Placeholders:
      prefix, year, month, day, hour (UTC, from ``record.created``), id, ext, uuid, host,
      pid, seq. Keys are at most 1,024 bytes (S3's limit).
    * ``region_name``, ``endpoint_url``, ``profile_name`` -- passed to boto3; otherwise its own
      chain applies, plus ``$AWS_REGION`` when ``$AWS_DEFAULT_REGION`` is unset.
    * ``workers=4`` concurrent uploads; ``close_timeout=5.0`` seconds for flush/close.
    * ``mode="object"|"batch"``; batch: ``max_batch_records=10000``,
      ``max_batch_bytes=8 MiB`` (uncompressed), ``max_batch_age=60`` seconds.
    * ``compression="gzip"|"zstd"|"none"``, ``compress_level``.
    * ``spool_dir``, ``spool_fsync="never"|"interval"|"always"``, ``max_record_bytes=5 MiB``,
      ``max_queue_bytes=64 MiB``, ``when_full="spool"|"drop"|"block"``, ``block_timeout=1``.
    * ``sse``, ``sse_kms_key_id``, ``expected_bucket_owner``, ``storage_class``,
      ``checksum_algorithm="CRC32"``, ``acl``; ``redact_fields``, ``hash_fields``.

    Raises ``ValueError``/``TypeError`` at construction for invalid or unknown arguments.
    """

    def __init__(self, bucket: str | None = None, *, level: int | str = logging.NOTSET,
                 **options: Any) -> None:
        super().__init__(level)
        self.config = HandlerConfig.from_kwargs(bucket=bucket, **options)
        self._counters = Counters()
        self._reports = ReportOnce()
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._last_drop_warning = 0.0
        self._redact = make_redactor(self.config)
        codec = make_codec(self.config.compression, self.config.compress_level)
        self._ext = ".json" + codec.suffix
        # Fail at start-up, not per record or per batch, on a key over S3's limit.
        render_key(self.config.key_template, prefix=self.config.prefix,
                   ext=".ndjson" + codec.suffix if self.config.mode == "batch" else self._ext,
                   partition=Partition.of(0), record_id="x" * MAX_ID_CHARS)
        self._spool = (Spool(self.config.spool_dir, self.config.spool_fsync)
                       if self.config.spool_dir and self.config.enabled else None)
        self._uploader = S3Uploader(self.config)
        self._delivery = Delivery(self.config, self._uploader, self._counters, self._spool, codec)
        self._worker = DeliveryWorker(self.config, self._delivery, self._counters, self._spool)
        self._worker.adopt_abandoned()
        _LIVE_HANDLERS.add(self)

    # -- logging.Handler -------------------------------------------------------------------
    def handle(self, record: logging.LogRecord) -> bool:
        """Skip the handler's own and the AWS stack's records before taking the handler lock:
        ``logging.shutdown()`` holds that lock while ``flush()`` waits for the very threads
        that log them (botocore's "Found credentials", our failure reports)."""
        if is_internal_record(record):
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        """Snapshot and enqueue ``record``'s payload. Never blocks on I/O, never raises."""
        try:
            self._ship(record)
        except Exception:
            self.handleError(record)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record emitted before the call has an outcome.

        Waits at most ``timeout`` seconds (``None`` means ``close_timeout``: this is what
        ``logging.shutdown()`` calls, and exit must never hang). Returns True only if all
        of those records were delivered.
        """
        if not self.config.enabled:
            return True
        if _inside_logging_config():
            timeout = 0.0  # waiting could only stall: see _close_when_config_done
        return self._worker.flush(self.config.close_timeout if timeout is None else timeout,
                                  at_shutdown=timeout is None)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is queued or spooled, recovered records
        included; True when idle. (``flush`` only waits for records emitted before it.)
        """
        deadline = time.monotonic() + timeout
        while self.config.enabled:
            self._worker.cut_batches()
            stats = self._counters.snapshot()
            if stats["queued"] == 0 and stats["spooled"] == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Flush up to ``close_timeout``, stop, and release the spool. Safe to call twice.

        Called by ``dictConfig()`` (which holds logging's module lock), the handler keeps
        accepting and delivering records and closes as soon as that configuration is done.
        """
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        if _inside_logging_config() and self._close_later():
            return
        self._close_now()

    def _close_later(self) -> bool:
        try:
            # Not a daemon: dictConfig took this handler off logging's exit list, so exit
            # must wait (at most close_timeout) for this close, or what it holds is lost.
            threading.Thread(target=self._close_when_config_done, daemon=False,
                             name="s3-log-handler-close").start()
        except RuntimeError:  # interpreter shutdown: no new threads
            return False
        return True

    def _close_when_config_done(self) -> None:
        # botocore takes logging's module lock mid-upload (logger caches that dictConfig's
        # setLevel cleared), so uploads stall while dictConfig holds it: waiting inside
        # close() would stall the reload for close_timeout and deliver nothing.
        with _LOGGING_MODULE_LOCK:
            pass
        self._close_now()

    def _close_now(self) -> None:
        try:
            self._worker.close(self.config.close_timeout)
            if self._spool is not None:
                self._spool.close()
        finally:
            self._closed = True
            _LIVE_HANDLERS.discard(self)
            super().close()

    def stats(self) -> dict[str, Any]:
        """A copy of the counters; see :mod:`s3_log_handler.counters` for the identity."""
        return self._counters.snapshot()

    def __repr__(self) -> str:
        where = f"s3://{self.config.bucket}/{self.config.prefix}" if self.config.enabled else "off"
        return f"<S3Handler {where} ({logging.getLevelName(self.level)})>"

    # -- the emit path -------------------------------------------------------------------
    def _ship(self, record: logging.LogRecord) -> None:
        # Internal records never get here: handle() drops them before taking the lock.
        payload = getattr(record, self.config.attribute, None)
        if payload is None or not self.config.enabled:
            self._counters.arrive("emitted", "ignored")
            if payload is not None:
                # At first use, not in __init__: dictConfig builds handlers before it sets
                # the levels that decide whether this line is shown.
                self._reports.report("disabled", logging.INFO,
                                     "ANALYTICS_S3_BUCKET not configured - skipping S3 export")
            return
        if self._closed:
            self._refuse_late(record)
            return
        # Redact first: the id in the key and metadata must be the hashed one, never raw PII.
        payload = self._redact(payload)
        raw_id = payload.get(self.config.id_field) if isinstance(payload, Mapping) else None
        record_id = sanitize_id(raw_id)
        entry = self._snapshot(record, payload, record_id)
        if entry is None:
            return
        entry = self._write_ahead(entry)
        refused = self._worker.submit(entry)
        if refused is not None:
            self._refuse(entry, refused)

    def _snapshot(self, record: logging.LogRecord, payload: object, record_id: str) -> (
        Entry | None
    ):
        # A filter may have set any created; a non-finite one has no partition.
        created = record.created if math.isfinite(record.created) else time.time()
        key = None
        if self.config.mode == "object":
            key = render_key(self.config.key_template, prefix=self.config.prefix, ext=self._ext,
                             partition=Partition.of(created), record_id=record_id)
        try:
            line = json_line(payload)
        except EncodeError:
            body = _safe_repr(payload)[:4096].encode("utf-8", "replace")
            self._dead_letter_at_emit(Entry(body, created, record_id, key), "encode_error")
            self.handleError(record)
            return None
        if line.fallbacks:
            self._counters.add(fallbacks=line.fallbacks)
        entry = Entry(line.body, created, record_id, key)
        if entry.size > self.config.max_record_bytes:
            self._dead_letter_at_emit(entry, "too_large")
            self._reports.report("too_large", logging.ERROR,
                                 "analytics record %s is %d bytes, over max_record_bytes=%d; "
                                 "dead-lettered", record_id, entry.size,
                                 self.config.max_record_bytes)
            return None
        return entry

    def _dead_letter_at_emit(self, entry: Entry, reason: str) -> None:
        self._delivery.dead_letter([entry], reason, source="emitted")
        self._worker.count_refused()  # so that flush() reports it as not delivered

    def _write_ahead(self, entry: Entry) -> Entry:
        if self._spool is None:
            return entry
        try:
            return self._spool.append(entry)
        except OSError as exc:
            self._reports.report("spool-write", logging.ERROR,
                                 "cannot write to spool %s (%s); records are held in memory "
                                 "only until it works again", self._spool.directory, exc)
            return entry

    def _refuse(self, entry: Entry, reason: str) -> None:
        if entry.ref is not None and self._spool is not None:
            self._spool.resolve(entry.ref)
        self._counters.arrive("emitted", "dropped", reason=reason)
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            self._last_drop_warning = now
            logger.warning("S3Handler dropped an analytics record (%s); %s dropped so far",
                           reason, self._counters.get("dropped"))

    def _refuse_late(self, record: logging.LogRecord) -> None:
        self._counters.arrive("emitted", "dropped", reason="closed")
        self._reports.report("closed", logging.WARNING,
                             "S3Handler is closed; dropped a record from logger %r (and will "
                             "count, not report, any more)", record.name)

    # -- start-up and fork ---------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        self._counters.reset()
        self._uploader.reset_after_fork()
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._worker.reset_after_fork()
        self._close_lock = threading.Lock()


def _safe_repr(payload: object) -> str:
    """What a dead letter keeps of a payload that has no JSON form; never raises."""
    try:
        return repr(payload)
    except Exception as exc:
        return f"<unrepresentable {type(payload).__name__}: {type(exc).__name__}>"


def _inside_logging_config() -> bool:
    """True on a thread holding logging's module lock, as ``dictConfig()`` does throughout."""
    is_owned = getattr(_LOGGING_MODULE_LOCK, "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def _reset_handlers_after_fork() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_handlers_after_fork)
