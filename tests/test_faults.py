"""Faults inside our own process, at every I/O site of the delivery core, over real HTTP.

S3 (moto over HTTP on 127.0.0.1) stays healthy throughout. What fails is our side: spool
writes, fsyncs, renames, unlinks, listings and reads, dead-letter writes, gzip, creating the
boto3 client, and a PutObject refused *before* it is sent (so S3 never stored it). Hence:

* every record reaches S3 exactly once (bucket versioning shows no key written twice);
* ``stats()`` balances and no counter is ever negative, on every sample taken meanwhile;
* ``emit()`` never raises nor reports a logging error; no background thread dies;
* once the faults stop, new records are delivered too.

Injection points are module globals the core keeps: ``_spool.os``/``_spool.open`` (and the
same in ``_segment_files``, ``_segment_table`` and ``_spool_recovery``, where the spool's
file calls live, and ``_spool_dir``), ``_deadletters.os``/``_deadletters.open`` (and
``_letter_area``), ``_encode.gzip`` and ``_encode._libdeflate``, and ``boto3_session=``.
Errors injected: ``OSError`` EIO, ENOSPC, EACCES, and ``RuntimeError`` (an unexpected bug).
"""

from __future__ import annotations

import builtins
import errno
import functools
import gzip
import logging
import os
import random
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from conftest import free_port, read_objects, wait_until

from s3_log_handler import (
    S3Handler,
    _deadletters,
    _encode,
    _keeper,
    _letter_area,
    _segment_files,
    _segment_table,
    _spool,
    _spool_dir,
    _spool_recovery,
)
from s3_log_handler.counters import balance

# -- errors and the injector ----------------------------------------------------------------


def _os_error(code: int) -> Callable[[], BaseException]:
    return lambda: OSError(code, f"injected: {os.strerror(code)}")


EIO, ENOSPC, EACCES = _os_error(errno.EIO), _os_error(errno.ENOSPC), _os_error(errno.EACCES)


BUG: Callable[[], BaseException] = functools.partial(RuntimeError, "injected")


ALL_ERRORS: tuple[Callable[[], BaseException], ...] = (EIO, ENOSPC, EACCES, BUG)
ERROR_IDS = {EIO: "EIO", ENOSPC: "ENOSPC", EACCES: "EACCES", BUG: "RuntimeError"}

#: os functions the core's file I/O goes through (some only after the redesign), and the
#: checks and metadata calls of the private spool (lstat before each adoption, fstat and
#: fchmod of new files, mkdir/chmod of directories).
OS_FUNCTIONS = ("write", "fsync", "fdatasync", "unlink", "remove", "rename", "replace",
                "listdir", "scandir", "open", "ftruncate", "read", "pread", "pwrite",
                "lstat", "stat", "fstat", "fchmod", "chmod", "mkdir", "makedirs")


class Injector:
    """Decides, per call of a site, whether it fails and with what.

    ``rates`` maps a site to its failure probability; a site ``"spool.open:r"`` falls back
    to ``"spool.open"``. Draws come from one ``random.Random(seed)`` under a lock, and only
    while ``active`` is True. ``calls`` and ``hits`` count per site (while active).
    """

    def __init__(self, seed: int, rates: Mapping[str, float],
                 errors: Sequence[Callable[[], BaseException]] = ALL_ERRORS) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.rates = dict(rates)
        self.errors = tuple(errors)
        self.active = False
        self.calls: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()

    def _rate(self, site: str) -> float:
        if site in self.rates:
            return self.rates[site]
        return self.rates.get(site.partition(":")[0], 0.0)

    def maybe_fail(self, site: str) -> None:
        if not self.active:
            return
        rate = self._rate(site)
        if rate <= 0:
            return
        with self._lock:
            self.calls[site] += 1
            if self._rng.random() >= rate:
                return
            make = self._rng.choice(self.errors)
            self.hits[site] += 1
        raise make()

    def hit(self, *sites: str) -> int:
        """Faults injected at these sites, a site counting its ``:suffix`` variants too."""
        return sum(n for hit, n in self.hits.items()
                   if any(hit == s or hit.startswith(f"{s}:") for s in sites))


def _open_kind(mode: object = "r", flags: int | None = None) -> str:
    """``"r"`` for a read-only open, else ``"w"`` (builtin ``open`` mode, or ``os.open`` flags)."""
    if flags is not None:
        return "r" if flags & os.O_ACCMODE == os.O_RDONLY else "w"
    return "r" if isinstance(mode, str) and not set(mode) & set("wax+") else "w"


class FaultyOs:
    """The real ``os`` module, except that :data:`OS_FUNCTIONS` may fail before they run.

    Sites are ``"<area>.os.<name>"``; ``os.open`` is ``"<area>.os.open:r"`` or ``":w"``,
    and ``os.fsync``/``os.fdatasync`` are ``"...:dir"`` or ``"...:file"``.
    """

    def __init__(self, injector: Injector, area: str) -> None:
        self._wrapped = {name: self._wrap(injector, area, name) for name in OS_FUNCTIONS
                         if hasattr(os, name)}

    @staticmethod
    def _wrap(injector: Injector, area: str, name: str) -> Callable[..., Any]:
        real = getattr(os, name)
        site = f"{area}.os.{name}"

        @functools.wraps(real)
        def faulty(*args: Any, **kwargs: Any) -> Any:
            if name == "open":
                flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
                injector.maybe_fail(f"{site}:{_open_kind(flags=flags)}")
            elif name in ("fsync", "fdatasync") and args and isinstance(args[0], int):
                is_dir = stat.S_ISDIR(os.fstat(args[0]).st_mode)
                injector.maybe_fail(f"{site}:{'dir' if is_dir else 'file'}")
            else:
                injector.maybe_fail(site)
            return real(*args, **kwargs)

        return faulty

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("_wrapped", {})
        return wrapped[name] if name in wrapped else getattr(os, name)


def faulty_open(injector: Injector, area: str) -> Callable[..., Any]:
    """A builtin ``open`` that may fail first; sites ``"<area>.open:r"`` and ``":w"``."""

    def _open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        injector.maybe_fail(f"{area}.open:{_open_kind(mode)}")
        return builtins.open(file, mode, *args, **kwargs)

    return _open


class FaultyGzip:
    """The ``gzip`` module whose ``compress`` may fail (site ``"gzip.compress"``)."""

    def __init__(self, injector: Injector) -> None:
        self._injector = injector

    def compress(self, *args: Any, **kwargs: Any) -> bytes:
        self._injector.maybe_fail("gzip.compress")
        return gzip.compress(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(gzip, name)


class FaultyDeflate:
    """libdeflate (PyPI ``deflate``, the default gzip engine) whose ``gzip_compress`` may fail
    at the same site, ``"gzip.compress"``."""

    def __init__(self, injector: Injector, engine: Any) -> None:
        self._injector = injector
        self._engine = engine

    def gzip_compress(self, *args: Any, **kwargs: Any) -> Any:
        self._injector.maybe_fail("gzip.compress")
        return self._engine.gzip_compress(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class FaultySession:
    """A boto3 session whose ``client()`` may fail (site ``"boto.client"``), and whose
    clients' PutObject may fail before the request is sent (site ``"boto.put"``).

    ``sent`` counts, per key, the PutObject calls that went on to the wire."""

    def __init__(self, injector: Injector, session: Any | None = None) -> None:
        self._injector = injector
        self._session = session or boto3.session.Session()
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        self._injector.maybe_fail("boto.client")
        client = self._session.client(*args, **kwargs)
        client.meta.events.register("before-call.s3.PutObject", self._before_put)
        return client

    def _before_put(self, params: Any = None, **_: Any) -> None:
        self._injector.maybe_fail("boto.put")
        path = str((params or {}).get("url_path", "?"))
        with self._lock:
            self.sent[path] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def install(monkeypatch: pytest.MonkeyPatch, injector: Injector) -> None:
    """Route the core's file I/O and compression through ``injector``."""
    # the spool, its segment file calls, and its directory checks
    for spool_module in (_spool, _segment_files, _segment_table, _spool_recovery, _spool_dir):
        monkeypatch.setattr(spool_module, "os", FaultyOs(injector, "spool"))
        monkeypatch.setattr(spool_module, "open", faulty_open(injector, "spool"), raising=False)
    for letter_module in (_deadletters, _letter_area):
        monkeypatch.setattr(letter_module, "os", FaultyOs(injector, "dead"))
        monkeypatch.setattr(letter_module, "open", faulty_open(injector, "dead"), raising=False)
    # Compression: whichever engine the handler's codec uses (zlib only without libdeflate).
    monkeypatch.setattr(_encode, "gzip", FaultyGzip(injector))
    if _encode._libdeflate is not None:
        monkeypatch.setattr(_encode, "_libdeflate", FaultyDeflate(injector, _encode._libdeflate))


#: Every site, for the all-sites-at-random tests.
ALL_SITES = (
    *(f"spool.os.{name}" for name in OS_FUNCTIONS), "spool.open",
    *(f"dead.os.{name}" for name in OS_FUNCTIONS), "dead.open",
    "gzip.compress", "boto.client", "boto.put",
)

# -- observing the handler ------------------------------------------------------------------


class Sampler:
    """Keeps every ``handler.stats()`` sample taken on a thread while the block runs."""

    def __init__(self, handler: S3Handler, interval: float = 0.001) -> None:
        self._handler = handler
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-stats-sampler")
        self.samples: list[dict[str, Any]] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._handler.stats())
            time.sleep(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wait_until(lambda: len(self.samples) > 20, 10)
        self._stop.set()
        self._thread.join()

    def problems(self) -> list[str]:
        """Samples that do not balance or hold a negative count (first few of each)."""
        return sample_problems(self.samples)


def sample_problems(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    unbalanced = [(i, balance(dict(s))) for i, s in enumerate(samples) if balance(dict(s))]
    negative = [(i, name, value) for i, s in enumerate(samples)
                for name, value in _counts(s) if value < 0]
    out = []
    if unbalanced:
        out.append(f"{len(unbalanced)}/{len(samples)} stats() samples do not balance, "
                   f"e.g. (sample, balance) {unbalanced[:3]}")
    if negative:
        names = sorted({name for _, name, _ in negative})
        out.append(f"{len(negative)} negative counts in {len(samples)} samples ({names}), "
                   f"e.g. (sample, counter, value) {negative[:3]}")
    return out


def _counts(stats: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    for name, value in stats.items():
        if isinstance(value, int):
            yield name, value
        elif isinstance(value, Mapping):
            for reason, count in value.items():
                if isinstance(count, int):
                    yield f"{name}[{reason}]", count


@pytest.fixture
def thread_deaths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every exception that ended a thread during the test (name: type: message)."""
    deaths: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        deaths.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)
    return deaths


def payload(session_id: str, n: int, **extra: object) -> dict[str, object]:
    return {"session_id": session_id, "user_email": f"user{n}@example.com",
            "duration_seconds": n / 10, "discovered_signals": {"team_size": n % 50},
            "notes": "n" * 200, **extra}


def emit_all(lg: logging.Logger, per_thread: Sequence[Sequence[str]],
             oversize: Sequence[str] = ()) -> list[str]:
    """One thread per list emits its ids through the real logging call, all at once;
    ``oversize`` ids get a 2 KB transcript and are spread over the threads. Returns every
    exception that escaped a logging call (there must be none)."""
    escaped: list[str] = []
    barrier = threading.Barrier(len(per_thread))

    def run(index: int, ids: Sequence[str]) -> None:
        mine = list(oversize[index::len(per_thread)])
        barrier.wait()
        for n, session_id in enumerate(ids):
            try:
                lg.info("Session analytics data",
                        extra={"analytics_data": payload(session_id, n)})
                if mine and n % 37 == 36:
                    lg.info("Session analytics data",
                            extra={"analytics_data": payload(mine.pop(), n, transcript="t" * 2048)})
            except BaseException as exc:  # emit() must never raise
                escaped.append(f"{type(exc).__name__}: {exc}")
        for session_id in mine:
            lg.info("Session analytics data",
                    extra={"analytics_data": payload(session_id, 0, transcript="t" * 2048)})

    threads = [threading.Thread(target=run, args=(i, ids), name=f"test-emitter-{i}")
               for i, ids in enumerate(per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "an emitter thread is stuck in emit()"
    return escaped


def ids_in_bucket(s3: Any, bucket: str) -> Counter[str]:
    """How often each session id occurs across every object (NDJSON lines or single JSON)."""
    return Counter(orjson.loads(line)["session_id"]
                   for body in read_objects(s3, bucket).values()
                   for line in body.splitlines() if line)


def versions_per_key(s3: Any, bucket: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            counts[version["Key"]] += 1
    return counts


def versioned(s3: Any, bucket: str) -> str:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def settled(handler: S3Handler, timeout: float) -> bool:
    """Poll until nothing is queued or spooled, or a gauge went negative (a bug the checks
    then report, without waiting out the timeout). wait_idle() alone would wait forever
    on a gauge stuck at -1."""
    handler.flush(timeout)

    def done() -> bool:
        stats = handler.stats()
        return stats["queued"] <= 0 and stats["spooled"] <= 0

    return wait_until(done, timeout)


def exactly_once(found: Counter[str], expected: set[str]) -> list[str]:
    """What is wrong with the ids found in the bucket, against those expected once each."""
    out = []
    missing = expected - set(found)
    extra = set(found) - expected
    twice = {k: v for k, v in found.items() if v > 1}
    if missing:
        out.append(f"{len(missing)} records never reached S3, e.g. {sorted(missing)[:5]}")
    if extra:
        out.append(f"{len(extra)} unexpected ids in the bucket, e.g. {sorted(extra)[:5]}")
    if twice:
        out.append(f"{len(twice)} records are in S3 more than once, e.g. "
                   f"{sorted(twice.items())[:5]}")
    return out


def rewritten(versions: Counter[str]) -> list[str]:
    twice = {k.rsplit("/", 1)[-1]: v for k, v in versions.items() if v > 1}
    if not twice:
        return []
    return [f"{len(twice)} keys were written more than once (S3 had acknowledged them), "
            f"e.g. {sorted(twice.items())[:5]}"]


def open_files_under(directory: Path) -> list[str]:
    """Files under ``directory`` that this process still holds open (Linux /proc)."""
    held = []
    root = str(directory.resolve())
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(root + os.sep) or target == root:
            held.append(target.removeprefix(root + os.sep))
    return held


def leaked_descriptors(directory: Path) -> list[str]:
    held = open_files_under(directory)
    if not held:
        return []
    return [f"{len(held)} descriptors into the spool are still open after close(), "
            f"e.g. {sorted(held)[:3]}"]


def caller_and_thread_problems(escaped: Sequence[str], thread_deaths: Sequence[str],
                               sampler: Sampler) -> list[str]:
    """What every fault test checks first: no emit() raised, no thread died, and every
    stats() sample balanced with no negative count."""
    return ([f"emit() raised: {e}" for e in escaped[:5]]
            + [f"a thread died: {d}" for d in thread_deaths] + sampler.problems())


def stderr_problems(err: str) -> list[str]:
    """A logging error or traceback printed to stderr (e.g. by ``Handler.handleError``).

    The library's own log lines are not on stderr here: pytest's log capture takes them."""
    out = []
    for marker in ("Traceback", "Logging error"):
        if marker in err:
            at = err.index(marker)
            out.append(f"stderr shows {marker!r}: {err[max(0, at - 200):at + 600]!r}")
    return out


FAST = {"retry_base": 0.05, "retry_cap": 0.2, "config_error_retry": 0.2,
        "max_batch_age": 0.2, "max_batch_records": 50, "close_timeout": 10}
#: Targeted tests: a broken core should fail them in seconds, not wait out long timeouts.
QUICK = {**FAST, "close_timeout": 5}
THREADS = 4
PER_THREAD = 100
N = THREADS * PER_THREAD


def attach(lg: logging.Logger, handler: S3Handler) -> logging.Logger:
    lg.addHandler(handler)
    return lg


# -- every site at random -------------------------------------------------------------------


@pytest.mark.parametrize("spool", ["none", "fsync-always", "fsync-interval"])
@pytest.mark.parametrize("mode", ["object", "batch"])
def test_random_faults_at_every_site_lose_nothing_and_send_nothing_twice(
    mode: str, spool: str, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """4 threads log 400 records (plus 8 oversize ones) while every site fails with p=0.2.

    S3 never saw a failed request, so: 400 delivered, each once, in exactly one version;
    the 8 oversize records are dead-lettered as too_large; every sample balances with no
    negative count; then, faults off, 40 more records are delivered (threads alive).
    """
    injector = Injector(seed=20240601, rates=dict.fromkeys(ALL_SITES, 0.2))
    install(monkeypatch, injector)
    # Small segments, so that many are created, sealed and deleted while faults hit
    # (a no-op should the constant go away).
    monkeypatch.setattr(_spool, "SEGMENT_BYTES", 16 * 1024, raising=False)
    # Adoption rounds (and the ownership check before each) while the faults hit.
    monkeypatch.setattr(_keeper, "ADOPT_INTERVAL", 0.2)
    session = FaultySession(injector)
    versioned(s3, bucket)
    spool_args: dict[str, Any] = {} if spool == "none" else {
        "spool_dir": str(tmp_path / "spool"), "spool_fsync": spool.removeprefix("fsync-")}
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, boto3_session=session,
                        max_record_bytes=1024, **spool_args, **FAST)
    lg = attach(analytics_logger, handler)
    ids = [[f"s-{t}-{n}" for n in range(PER_THREAD)] for t in range(THREADS)]
    expected = {i for chunk in ids for i in chunk}
    oversize = [f"big-{n}" for n in range(8)]
    after = [f"after-{n}" for n in range(40)]
    problems: list[str] = []
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            escaped = emit_all(lg, ids, oversize)
            # Keep failing while about half the uploads happen, then heal.
            wait_until(lambda: handler.stats()["delivered"] >= N // 2, 4)
            injector.active = False
            if not settled(handler, 20):
                problems.append(f"not settled 20 s after the faults stopped: {handler.stats()}")
            during = handler.stats()
            found = ids_in_bucket(s3, bucket)

            for n, session_id in enumerate(after):
                lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
            flushed_after = handler.flush(15)
            final = handler.stats()
        idle = handler.wait_idle(5)
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    print(f"\nfaults[{mode}-{spool}]: hits {dict(sorted(injector.hits.items()))}; "
          f"final stats {final}")

    problems += caller_and_thread_problems(escaped, thread_deaths, sampler)
    counts = (during["emitted"], during["delivered"], during["queued"], during["spooled"],
              during["dropped"], during["dead_lettered"])
    if counts != (N + 8, N, 0, 0, 0, 8) or during["dead_letter_reasons"] != {"too_large": 8}:
        problems.append(f"after the faults: (emitted, delivered, queued, spooled, dropped, "
                        f"dead_lettered) = {counts}, expected {(N + 8, N, 0, 0, 0, 8)}; "
                        f"dead letters {during['dead_letter_reasons']}")
    problems += exactly_once(found, expected)
    if not flushed_after:
        problems.append(f"records logged after the faults stopped were not all delivered: "
                        f"{final}")
    if (final["delivered"], final["queued"], final["spooled"]) != (N + len(after), 0, 0):
        problems.append(f"final (delivered, queued, spooled) = "
                        f"{(final['delivered'], final['queued'], final['spooled'])}, "
                        f"expected {(N + len(after), 0, 0)}")
    if not idle:
        problems.append(f"wait_idle(5) is False at the end: {final}")
    problems += exactly_once(ids_in_bucket(s3, bucket), expected | set(after))
    problems += rewritten(versions_per_key(s3, bucket))
    if mode == "object":
        names = {k.rsplit("/", 1)[-1] for k in versions_per_key(s3, bucket)}
        if names != {f"{i}.json.gz" for i in expected | set(after)}:
            problems.append("object mode: keys are not exactly <session_id>.json.gz")
    if spool != "none":
        problems += leaked_descriptors(tmp_path / "spool")
    problems += stderr_problems(err)
    # The harness really injected faults where they matter (batch mode makes only ~10
    # PUTs, which may all pass: there the spool sites carry the test).
    if mode == "object":
        assert injector.hit("boto.put", "gzip.compress", "boto.client"), injector.hits
        # ~400 compressions at p=0.2: the engine the codec really uses was faulted.
        assert injector.hit("gzip.compress"), injector.hits
    if spool != "none":
        assert injector.hit("spool.os.write", "spool.open", "spool.os.open"), injector.hits
        if mode == "object":  # batch runs end before a round (0.2 s) may come
            assert injector.calls["spool.os.lstat"], "no ownership check during the faults"
    assert not problems, "\n".join(problems)


# -- one site at a time -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["object", "batch"])
def test_unlink_failing_after_every_successful_put_resends_nothing(
    mode: str, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """Every os.unlink fails (EIO): the spool cannot delete delivered segments. The PUT did
    succeed, so nothing may be sent again and no gauge may go negative (once seen: 400
    records gave delivered 401, queued -1)."""
    injector = Injector(seed=1, rates={"spool.os.unlink": 1.0, "spool.os.remove": 1.0},
                        errors=[EIO])
    install(monkeypatch, injector)
    session = FaultySession(injector)
    versioned(s3, bucket)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, boto3_session=session,
                        spool_dir=str(tmp_path), **QUICK)
    lg = attach(analytics_logger, handler)
    ids = [[f"u-{t}-{n}" for n in range(PER_THREAD)] for t in range(THREADS)]
    expected = {i for chunk in ids for i in chunk}
    problems: list[str] = []
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            escaped = emit_all(lg, ids)
            if not settled(handler, 10):
                problems.append(f"not settled: {handler.stats()}")
            stats = handler.stats()
            injector.active = False
            lg.info("Session analytics data", extra={"analytics_data": payload("late", 0)})
            flushed = handler.flush(5)
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    problems += caller_and_thread_problems(escaped, thread_deaths, sampler)
    if (stats["delivered"], stats["queued"], stats["spooled"]) != (N, 0, 0):
        problems.append(f"(delivered, queued, spooled) = "
                        f"{(stats['delivered'], stats['queued'], stats['spooled'])} for {N}")
    problems += exactly_once(ids_in_bucket(s3, bucket), expected | {"late"})
    problems += rewritten(versions_per_key(s3, bucket))
    resent = {k: v for k, v in session.sent.items() if v > 1}
    if resent:
        problems.append(f"{len(resent)} PutObject requests sent more than once")
    if not flushed:
        problems.append("flush() once unlink works again is False: records are stuck")
    problems += leaked_descriptors(tmp_path)
    problems += stderr_problems(err)
    assert injector.hit("spool.os.unlink", "spool.os.remove") > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=ERROR_IDS.get)
@pytest.mark.parametrize("mode", ["object", "batch"])
def test_client_creation_failing_delays_uploads_and_loses_nothing(
    mode: str, error: Callable[[], BaseException], tmp_path: Path, moto_endpoint: str,
    s3: Any, bucket: str, analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """Making the boto3 client fails (each error kind) until it has failed 3 times: the
    random runs may never hit this site, made once per handler. Uploads wait and retry;
    then every record arrives once, every sample balances, and no thread died."""
    injector = Injector(seed=8, rates={"boto.client": 1.0}, errors=[error])
    install(monkeypatch, injector)
    session = FaultySession(injector)
    versioned(s3, bucket)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, boto3_session=session,
                        spool_dir=str(tmp_path), **QUICK)
    lg = attach(analytics_logger, handler)
    ids = [[f"c-{t}-{n}" for n in range(25)] for t in range(THREADS)]
    expected = {i for chunk in ids for i in chunk}
    problems: list[str] = []
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            escaped = emit_all(lg, ids)
            wait_until(lambda: injector.hit("boto.client") >= 3, 10)
            failing = handler.stats()
            injector.active = False
            flushed = handler.flush(10)
            stats = handler.stats()
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    problems += caller_and_thread_problems(escaped, thread_deaths, sampler)
    if failing["delivered"] != 0 or failing["dropped"] or failing["dead_lettered"]:
        problems.append(f"while no client could be made: {failing}")
    if not flushed or (stats["delivered"], stats["queued"], stats["spooled"]) != (
            len(expected), 0, 0):
        problems.append(f"after the client could be made: flush {flushed}, {stats}")
    problems += exactly_once(ids_in_bucket(s3, bucket), expected)
    problems += rewritten(versions_per_key(s3, bucket))
    problems += stderr_problems(err)
    assert injector.hit("boto.client") >= 3, injector.hits
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["object", "batch"])
def test_a_spool_whose_segments_cannot_be_unlinked_hands_on_nothing_delivered(
    mode: str, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """unlink fails (EIO) until after close: close() must not raise, and the next handler on
    the directory must not send the delivered records again (batch mode would duplicate
    them in a new object)."""
    injector = Injector(seed=2, rates={"spool.os.unlink": 1.0, "spool.os.remove": 1.0},
                        errors=[EIO])
    install(monkeypatch, injector)
    versioned(s3, bucket)
    first = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, spool_dir=str(tmp_path),
                      **QUICK)
    lg = attach(analytics_logger, first)
    ids = [f"h-{n}" for n in range(60)]
    problems: list[str] = []
    injector.active = True
    try:
        for n, session_id in enumerate(ids):
            lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
        first.flush(10)
        settled(first, 5)
    finally:
        try:
            first.close()
        except Exception as exc:
            problems.append(f"close() raised {type(exc).__name__}: {exc}")
        injector.active = False
    before = versions_per_key(s3, bucket)
    second = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, spool_dir=str(tmp_path),
                       **QUICK)
    try:
        idle = second.wait_idle(15)
        stats = second.stats()
    finally:
        second.close()
    if not idle or (stats["recovered"], stats["delivered"]) != (0, 0):
        problems.append(f"the next handler recovered {stats['recovered']} and delivered "
                        f"{stats['delivered']} records already delivered (idle: {idle})")
    if versions_per_key(s3, bucket) != before:
        problems.append("the next handler wrote objects again")
    problems += [p for p in exactly_once(ids_in_bucket(s3, bucket), set(ids))
                 if "never reached" in p]
    assert not problems, "\n".join(problems)


def test_fsync_failing_with_fsync_always_neither_loses_nor_mixes_up_records(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """spool_fsync="always", a third of the fsyncs fail (EIO) after the line was written,
    and memory is small, so records spill to disk and are read back by line number.

    A record whose fsync failed may be kept or dropped for lack of memory (counted
    queue_full); but no record may be delivered twice, and every one counted delivered must
    be in S3 (once seen: the spool's line numbers shifted by one per failed fsync, so the
    backlog re-sent one record and never sent another)."""
    injector = Injector(seed=3, rates={"spool.os.fsync": 0.3, "spool.os.fdatasync": 0.3},
                        errors=[EIO])
    install(monkeypatch, injector)
    versioned(s3, bucket)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                        spool_fsync="always", max_queue_bytes=16 * 1024, **QUICK)
    lg = attach(analytics_logger, handler)
    ids = [[f"f-{t}-{n}" for n in range(PER_THREAD)] for t in range(THREADS)]
    expected = {i for chunk in ids for i in chunk}
    problems: list[str] = []
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            escaped = emit_all(lg, ids)
            injector.active = False
            if not settled(handler, 20):
                problems.append(f"not settled: {handler.stats()}")
            stats = handler.stats()
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    found = ids_in_bucket(s3, bucket)
    problems += caller_and_thread_problems(escaped, thread_deaths, sampler)
    if set(stats["dropped_reasons"]) - {"queue_full"}:
        problems.append(f"dropped for other reasons: {stats['dropped_reasons']}")
    if (stats["emitted"], stats["delivered"] + stats["dropped"]) != (N, N):
        problems.append(f"emitted {stats['emitted']}, delivered {stats['delivered']} + "
                        f"dropped {stats['dropped']}: expected {N} and {N}")
    if sum(found.values()) != stats["delivered"]:
        problems.append(f"{stats['delivered']} counted delivered but {sum(found.values())} "
                        f"in S3 ({len(found)} distinct)")
    problems += [p for p in exactly_once(found, expected) if "never reached" not in p]
    problems += rewritten(versions_per_key(s3, bucket))
    problems += leaked_descriptors(tmp_path)
    problems += stderr_problems(err)
    assert injector.hit("spool.os.fsync", "spool.os.fdatasync") > 0
    assert max(s["spooled"] for s in sampler.samples) > 0, "memory never filled: no spill"
    assert not problems, "\n".join(problems)


def test_fsync_failing_with_fsync_interval_kills_no_thread(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """spool_fsync="interval" while every fsync fails (EIO) and uploads fail too (so the
    active segment has records to sync): the periodic fsync must survive, and everything
    arrives once the faults stop."""
    injector = Injector(seed=4, rates={"spool.os.fsync:file": 1.0,
                                       "spool.os.fdatasync:file": 1.0, "boto.put": 1.0},
                        errors=[EIO])
    install(monkeypatch, injector)
    session = FaultySession(injector)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                        spool_fsync="interval", boto3_session=session, **QUICK)
    lg = attach(analytics_logger, handler)
    ids = [f"i-{n}" for n in range(100)]
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            for n, session_id in enumerate(ids[:50]):
                lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
            # The periodic sync runs once a second: let it fail twice (bounded wait).
            wait_until(lambda: injector.hit("spool.os.fsync", "spool.os.fdatasync") >= 2, 5)
            for n, session_id in enumerate(ids[50:]):
                lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
            injector.active = False
            flushed = handler.flush(15)
            stats = handler.stats()
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    problems = caller_and_thread_problems((), thread_deaths, sampler)
    if not flushed or (stats["delivered"], stats["queued"], stats["spooled"]) != (100, 0, 0):
        problems.append(f"flush {flushed}, stats {stats}")
    problems += exactly_once(ids_in_bucket(s3, bucket), set(ids))
    problems += leaked_descriptors(tmp_path)
    problems += stderr_problems(err)
    assert injector.hit("spool.os.fsync", "spool.os.fdatasync") > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("error", [EIO, EACCES, BUG], ids=ERROR_IDS.get)
def test_a_spool_directory_that_cannot_be_listed_does_not_break_start_up(
    error: Callable[[], BaseException], tmp_path: Path, moto_endpoint: str, s3: Any,
    bucket: str, analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """A closed handler left 30 records on disk; the next one is built while listing the
    spool fails. Construction must not raise (dictConfig never crashes), and once listing
    works the leftovers are adopted and delivered, each once."""
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    first = S3Handler(bucket, endpoint_url=dead_endpoint, spool_dir=str(tmp_path),
                      close_timeout=0.3, retry_base=0.05, retry_cap=0.2)
    lg = attach(analytics_logger, first)
    ids = [f"l-{n}" for n in range(30)]
    for n, session_id in enumerate(ids):
        lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
    first.close()
    assert first.stats()["spooled"] + first.stats()["queued"] == 30
    lg.removeHandler(first)

    injector = Injector(seed=5, rates={"spool.os.listdir": 1.0, "spool.os.scandir": 1.0},
                        errors=[error])
    install(monkeypatch, injector)
    injector.active = True
    second: S3Handler | None = None
    try:
        try:
            second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                               **QUICK)
        except Exception as exc:
            pytest.fail(f"S3Handler() raised {type(exc).__name__}: {exc} while the spool "
                        f"directory could not be listed")
        injector.active = False
        delivered = wait_until(lambda: second is not None and second.stats()["delivered"] == 30,
                               15)
        stats = second.stats()
    finally:
        injector.active = False
        if second is not None:
            second.close()
    err = capfd.readouterr().err
    assert delivered, stats
    assert (stats["recovered"], stats["delivered"], balance(stats)) == (30, 30, 0), stats
    assert not exactly_once(ids_in_bucket(s3, bucket), set(ids))
    assert thread_deaths == []
    assert not stderr_problems(err), stderr_problems(err)
    assert injector.hit("spool.os.listdir", "spool.os.scandir") > 0


class _CheckFailsOffMainThread:
    """``os`` for the spool's directory checks, whose ``lstat`` fails (EIO) ``failures``
    times when called off the main thread: the check before an adoption (on the keeper),
    never the one at construction."""

    def __init__(self, failures: int) -> None:
        self.left = failures

    def lstat(self, path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if threading.current_thread() is not threading.main_thread() and self.left > 0:
            self.left -= 1
            raise OSError(errno.EIO, "injected: lstat")
        return os.lstat(path, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_an_io_error_in_the_check_before_an_adoption_does_not_switch_the_spool_off(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, thread_deaths: list[str],
) -> None:
    """A handler that cannot upload holds 30 records on disk and closes after the next
    handler started, so only the next one's keeper can adopt them. Before each adoption it
    checks that the directory is still ours; that lstat fails 3 times (EIO). Once seen: one
    such error was taken for "not ours" and switched the spool off for good. It is reported
    and retried: the leftovers are adopted and delivered, and no refusal is logged."""
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    first = S3Handler(bucket, endpoint_url=dead_endpoint, spool_dir=str(tmp_path),
                      close_timeout=0.3, retry_base=0.05, retry_cap=0.2)
    lg = attach(analytics_logger, first)
    ids = [f"k-{n}" for n in range(30)]
    for n, session_id in enumerate(ids):
        lg.info("Session analytics data", extra={"analytics_data": payload(session_id, n)})
    caplog.set_level(logging.INFO, logger="s3_log_handler")
    failing = _CheckFailsOffMainThread(3)
    monkeypatch.setattr(_spool_dir, "os", failing)
    monkeypatch.setattr(_keeper, "ADOPT_INTERVAL", 0.0)
    second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path), **QUICK)
    first.close()
    lg.removeHandler(first)
    try:
        delivered = wait_until(lambda: second.stats()["delivered"] == 30, 15)
        stats = second.stats()
    finally:
        second.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "s3_log_handler"]
    assert failing.left == 0
    assert delivered, stats
    assert (stats["recovered"], stats["delivered"], balance(stats)) == (30, 30, 0), stats
    assert not exactly_once(ids_in_bucket(s3, bucket), set(ids))
    assert not [m for m in messages if "refused" in m], messages
    assert any("could not adopt" in m and "injected: lstat" in m for m in messages), messages
    assert any("recovered" in m and "adopt" in m for m in messages), messages
    assert thread_deaths == []


@pytest.mark.parametrize("error", ALL_ERRORS, ids=ERROR_IDS.get)
@pytest.mark.parametrize("site", ["dead.open", "dead.os.write"])
def test_an_oversize_record_is_counted_dead_lettered_even_when_its_letter_cannot_be_written(
    site: str, error: Callable[[], BaseException], tmp_path: Path, moto_endpoint: str,
    s3: Any, bucket: str, analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """max_record_bytes=1024 and a 2 KB payload, while writing dead letters fails: the
    record is counted dead_lettered (too_large), flush() reports it as not delivered, no
    logging error escapes emit(), and the records around it are delivered."""
    # The caller's thread never lists dead/ (the area is counted in memory): what can fail
    # there is creating and writing the letter.
    also = {"dead.open": "dead.os.open:w", "dead.os.write": "dead.os.write"}[site]
    injector = Injector(seed=6, rates={site: 1.0, also: 1.0}, errors=[error])
    install(monkeypatch, injector)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                        max_record_bytes=1024, **QUICK)
    lg = attach(analytics_logger, handler)
    try:
        lg.info("Session analytics data", extra={"analytics_data": payload("ok-1", 1)})
        assert handler.flush(10)
        injector.active = True
        lg.info("Session analytics data",
                extra={"analytics_data": payload("too-big", 2, transcript="t" * 2048)})
        lg.info("Session analytics data", extra={"analytics_data": payload("ok-2", 3)})
        flushed = handler.flush(10)
        injector.active = False
        stats = handler.stats()
        lg.info("Session analytics data",
                extra={"analytics_data": payload("too-big-later", 4, transcript="t" * 2048)})
        stats_later = handler.stats()
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    assert not stderr_problems(err), stderr_problems(err)
    assert (stats["emitted"], stats["delivered"], stats["dead_lettered"]) == (3, 2, 1), stats
    assert stats["dead_letter_reasons"] == {"too_large": 1}, stats
    assert balance(stats) == 0
    assert flushed is False  # the oversize record was not delivered
    assert stats_later["dead_letter_reasons"] == {"too_large": 2}
    letters = Counter(orjson.loads(p.read_bytes())["record_id"]
                      for p in (tmp_path / "dead").iterdir())
    assert letters["too-big-later"] == 1, letters  # dead letters are written again
    assert set(letters.values()) == {1}, letters
    assert not exactly_once(ids_in_bucket(s3, bucket), {"ok-1", "ok-2"})
    assert injector.hit(site, also) > 0


def test_spill_backlog_read_back_through_failing_reads_arrives_once(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], thread_deaths: list[str],
) -> None:
    """Memory is small, so records spill to the spool and are read back later, while half
    the read-side opens and reads fail (every error kind). Writes work, so nothing may be
    dropped: all 400 arrive once."""
    injector = Injector(seed=7, rates={"spool.open:r": 0.5, "spool.os.open:r": 0.5,
                                       "spool.os.read": 0.5, "spool.os.pread": 0.5})
    install(monkeypatch, injector)
    versioned(s3, bucket)
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                        max_queue_bytes=16 * 1024, **QUICK)
    lg = attach(analytics_logger, handler)
    ids = [[f"r-{t}-{n}" for n in range(PER_THREAD)] for t in range(THREADS)]
    expected = {i for chunk in ids for i in chunk}
    problems: list[str] = []
    try:
        with Sampler(handler) as sampler:
            injector.active = True
            escaped = emit_all(lg, ids)
            wait_until(lambda: handler.stats()["delivered"] >= N // 2, 5)
            injector.active = False
            if not settled(handler, 20):
                problems.append(f"not settled: {handler.stats()}")
            stats = handler.stats()
    finally:
        injector.active = False
        handler.close()
    err = capfd.readouterr().err
    problems += caller_and_thread_problems(escaped, thread_deaths, sampler)
    if (stats["delivered"], stats["dropped"], stats["queued"], stats["spooled"]) != (N, 0, 0, 0):
        problems.append(f"stats {stats}")
    problems += exactly_once(ids_in_bucket(s3, bucket), expected)
    problems += rewritten(versions_per_key(s3, bucket))
    problems += stderr_problems(err)
    assert max(s["spooled"] for s in sampler.samples) > 0, "memory never filled: no spill"
    assert not problems, "\n".join(problems)
