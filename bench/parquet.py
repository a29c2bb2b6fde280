"""Section 8: Parquet against NDJSON.gz on the same records (issue 11).

The same session payloads (bench/payloads.py) are written as batch objects of 10,000 records
in each format, in one thread, with the handler's own encoders (the codec an
``S3Handler(mode="batch", format="parquet")`` builds objects with): NDJSON with the default
gzip (the batch default) and Parquet with zstd (default) and snappy. For each: bytes per
record, what DuckDB reads to answer a two-column aggregate over all objects (its profiler's
``total_bytes_read``, cross-checked with the bytes the process read from files,
``rchar`` in /proc/self/io), and encoder records per CPU-second. Peak RSS while 200,000
records are written into one compacted part (``compact``'s writer: one Parquet writer,
row groups of 64 MiB of Arrow data) and as 10,000-record batch files runs in child
processes (``parquet.py --child``), as in section 5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson
from common import Check, Context, Section
from payloads import Payloads

from s3_log_handler._encode import make_codec

_GZIP = make_codec("gzip")  # the handler's own: libdeflate, default level
BATCH = 10_000
QUERY = ("SELECT discovered_signals.qualification_tier AS tier, avg(duration_seconds) "
         "FROM {} GROUP BY 1 ORDER BY 1")
COLUMNS = ["format", "records", "objects", "bytes/record", "x NDJSON.gz size",
           "DuckDB bytes read", "x NDJSON.gz read", "read() bytes", "encode records/CPU-s"]
RSS_COLUMNS = ["writer", "records", "RSS before MiB", "peak RSS MiB", "growth MiB", "wall s"]
FORMATS = {"NDJSON gzip (batch default)": ("ndjson", None),
           "Parquet zstd (default)": ("parquet", "zstd"),
           "Parquet snappy": ("parquet", "snappy")}


def _chunks(payloads: Payloads, count: int) -> Any:
    for start in range(0, count, BATCH):
        yield [orjson.dumps(payloads(i)) + b"\n" for i in range(start, min(count, start + BATCH))]


def handler_codec(compression: str) -> Any:
    """The codec an S3Handler(mode='batch', format='parquet') builds its objects with."""
    from s3_log_handler._parquet_codec import codec_for
    from s3_log_handler._settings import HandlerConfig

    return codec_for(HandlerConfig.from_kwargs(bucket="bench-bucket", mode="batch",
                                               format="parquet",
                                               parquet_compression=compression))


def write_objects(root: Path, fmt: str, codec: str | None, count: int) -> tuple[int, float]:
    """Write ``count`` records as batch objects under ``root``: (bytes, encoder CPU s)."""
    parquet = handler_codec(codec or "zstd") if fmt == "parquet" else None
    root.mkdir(parents=True)
    total, cpu = 0, 0.0
    for n, lines in enumerate(_chunks(Payloads(), count)):
        raw = b"".join(lines)
        start = time.process_time()
        if parquet is None:
            body = _GZIP.compress(raw)
        else:
            body, _ = parquet.for_key("events/year=2025/month=10/day=29/x.parquet", raw)
        cpu += time.process_time() - start
        (root / f"part-{n:05d}.{'parquet' if fmt == 'parquet' else 'ndjson.gz'}").write_bytes(body)
        total += len(body)
    return total, cpu


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def duckdb_reads(root: Path, fmt: str, profile: Path) -> tuple[int, int, list[Any]]:
    """Bytes DuckDB reads for :data:`QUERY` over ``root``: (profiler, read() syscalls, rows)."""
    relation = (f"read_parquet('{root}/*.parquet')" if fmt == "parquet" else
                f"read_json('{root}/*.ndjson.gz', format='newline_delimited')")
    con = duckdb.connect()
    for setting in ("SET enable_external_file_cache=false", "SET threads=1",
                    "PRAGMA enable_profiling='json'", f"SET profiling_output='{profile}'"):
        con.sql(setting)
    before = _rchar()
    rows = con.sql(QUERY.format(relation)).fetchall()
    read = _rchar() - before
    con.close()
    found = _find(json.loads(profile.read_text()), "total_bytes_read")
    return (int(found) if found is not None else -1), read, rows


def _find(node: Any, name: str) -> Any:
    if isinstance(node, dict):
        if name in node:
            return node[name]
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = _find(item, name)
            if found is not None:
                return found
    return None


def run(ctx: Context) -> Section:
    """Sizes, DuckDB reads and encode rates per format; RSS in child processes."""
    section = Section("8. Parquet vs NDJSON.gz: size, bytes DuckDB reads, encode rate, RSS",
                      COLUMNS)
    count = ctx.n(100_000, 20_000)
    results: dict[str, tuple[int, int, float, int]] = {}
    answers = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fmt, codec) in FORMATS.items():
            root = Path(tmp) / name.split()[0] / (codec or "gzip")
            size, cpu = write_objects(root, fmt, codec, count)
            read, syscalls, rows = duckdb_reads(root, fmt, Path(tmp) / "profile.json")
            answers.append([(t, round(a, 6)) for t, a in rows])
            results[name] = (size, read, cpu, syscalls)
    base_size, base_read = results["NDJSON gzip (batch default)"][:2]
    for name, (size, read, cpu, syscalls) in results.items():
        section.rows.append({
            "format": name, "records": count, "objects": -(-count // BATCH),
            "bytes/record": round(size / count), "x NDJSON.gz size": f"{size / base_size:.2f}",
            "DuckDB bytes read": f"{read:,}", "x NDJSON.gz read": f"{read / base_read:.4f}",
            "read() bytes": f"{syscalls:,}", "encode records/CPU-s": round(count / cpu)})
    same = all(a == answers[0] for a in answers)
    section.notes.append(
        f"Query: {QUERY.format('<objects>')} (two columns, one nested), one thread, fresh "
        "connection, external file cache off. 'DuckDB bytes read' is DuckDB's profiler "
        "metric total_bytes_read; 'read() bytes' is the process's rchar delta (every byte "
        "read through read()/pread(), so it also sees what the profiler might not). "
        "read_json sniffs the schema first and so reads each NDJSON.gz object about twice; "
        "Athena and Trino bill and scan the whole compressed JSON object once, and only the "
        f"column chunks of Parquet. Same answers in every format: {same}.")
    section.notes.append(f"Objects of {BATCH:,} records each (the handler's batch size); "
                         "encode rate is CPU time of the encoder alone, schema pinned after "
                         "the first object (the first pays for inference).")
    zstd = results["Parquet zstd (default)"]
    section.checks.append(Check("Parquet vs NDJSON.gz: bytes per record / DuckDB bytes read",
                                f"{zstd[0] / count:.0f} vs {base_size / count:.0f} B/record; "
                                f"{zstd[1]:,} bytes read vs {base_read:,} "
                                f"({base_read / max(1, zstd[1]):.0f}x less; "
                                f"{base_size / max(1, zstd[1]):.0f}x less than the JSON "
                                "objects' size, which Athena scans)", "reported", None))
    section.checks.append(Check("Parquet write (zstd, one thread)",
                                f"{count / zstd[2]:,.0f} records/CPU-s", "reported", None))
    _rss(ctx, section)
    return section


def _rss(ctx: Context, section: Section) -> None:
    import subprocess

    count = ctx.n(200_000, 50_000)
    rows = []
    for writer in ("parquet-part", "parquet-batches", "ndjson-part"):
        out = subprocess.run([sys.executable, __file__, "--child", writer, str(count)],
                             check=True, capture_output=True, text=True, timeout=900)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"writer": writer, "records": count, "RSS before MiB": r["before"],
                     "peak RSS MiB": r["peak"], "growth MiB": r["peak"] - r["before"],
                     "wall s": round(r["wall"], 1)})
    table = "; ".join(f"{r['writer']}: +{r['growth MiB']:.0f} MiB (peak {r['peak RSS MiB']:.0f})"
                      for r in rows)
    section.notes.append(f"Peak RSS in child processes writing {count:,} records ({table}). "
                         "parquet-part: one compacted part through compact's writer (one "
                         "ParquetWriter, 64 MiB Arrow row groups, temp file); parquet-batches: "
                         "the handler's encoder, one file per 10,000 records; ndjson-part: "
                         "the same records as one gzip part, the baseline.")
    part = rows[0]
    section.checks.append(Check(f"peak RSS growth writing {count:,} records as Parquet",
                                f"+{part['growth MiB']:.0f} MiB (one part), "
                                f"+{rows[1]['growth MiB']:.0f} MiB (batch files)",
                                "bounded (reported)", None))


def child(writer: str, count: int) -> dict[str, Any]:
    """Write ``count`` records with ``writer`` in this process; report RSS before and peak."""
    from rss import _reset_peak, _status_mib

    from s3_log_handler._compact_write import PartWriter
    from s3_log_handler._parquet import ParquetSchemas

    payloads = Payloads()
    schemas = ParquetSchemas()
    warm = [orjson.dumps(payloads(i)) + b"\n" for i in range(200)]
    codec = handler_codec("zstd")
    codec.for_key("events/year=2025/month=10/day=29/x.parquet", b"".join(warm))
    schemas.encode("day", warm)  # imports, pyarrow pools and the pinned schemas exist now
    written: list[int] = []
    fmt = "ndjson" if writer.startswith("ndjson") else "parquet"
    part = PartWriter(fmt, 5 * 1024**3, lambda n, f, rows, digest: written.append(rows),
                      lambda lines: schemas.schema_for("day", lines))
    before = _status_mib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    for lines in _chunks(payloads, count):
        if writer == "parquet-batches":
            codec.for_key("events/year=2025/month=10/day=29/x.parquet", b"".join(lines))
        else:
            part.add(lines)
    part.close()
    return {"before": before, "peak": _status_mib("VmHWM"),
            "wall": time.perf_counter() - start, "rows": sum(written)}


def main() -> None:
    """Child entry point: ``parquet.py --child WRITER COUNT`` prints one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("WRITER", "COUNT"), required=True)
    writer, count = parser.parse_args().child
    print(json.dumps(child(writer, int(count))))


if __name__ == "__main__":
    main()
