"""``s3-log-handler compact``: rewrite a day's small objects as a few large ones.

For each partition folder of the day (``[name=value/]year=/month=/day=[/name=value]``)
the sources (object-mode ``.json.gz``, batch ``.ndjson[.gz|.zst]``) are read in key order
and written as parts of about ``target_bytes`` under the destination prefix, in the same
folder. Every part is read back (rows and SHA-256) before the folder's manifest is written;
sources are deleted only with ``delete_sources``, only after that check, and only those
whose rows the parts hold (same ETag). See :mod:`._compact_plan` for re-runs.

The destination defaults to the sibling prefix ``PREFIX-compacted``: a table (or a reader
listing ``PREFIX/``) over the sources never sees the compacted copy, so nothing is
counted twice while both exist; the compacted data gets its own (Parquet) table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

from . import _names as names
from ._compact_plan import (
    MANIFEST_NAME,
    FolderPlan,
    Manifest,
    Part,
    is_part_name,
    manifest_key,
    next_manifest,
    part_key,
    plan_folder,
)
from ._compact_sources import (
    Source,
    count_rows,
    list_day_objects,
    list_sources,
    part_lines,
    read_lines,
)
from ._compact_write import PartWriter, describe
from ._parquet_schema import SplitCounts

FORMATS = ("parquet", "ndjson")
#: Default part size: 128 MiB, the split size engines (Athena/Trino, Spark) plan work by.
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
#: One PutObject holds at most 5 GiB.
MAX_TARGET_BYTES = 5 * 1024**3
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


class CompactError(RuntimeError):
    """The output did not check out: nothing was deleted in that folder."""


@dataclass(frozen=True, slots=True)
class CompactOptions:
    """One run's settings; :meth:`checked` validates them (``ValueError`` naming the rule)."""

    bucket: str
    prefix: str
    day: date
    to: str = "parquet"
    dest_prefix: str | None = None
    delete_sources: bool = False
    dry_run: bool = False
    target_bytes: int = DEFAULT_TARGET_BYTES
    compression: str = "zstd"

    @property
    def dest(self) -> str:
        """The destination prefix (``PREFIX-compacted`` unless given)."""
        return self.dest_prefix or f"{self.prefix}-compacted"

    def checked(self) -> CompactOptions:
        """These options, or ``ValueError`` for a bad name, format, size or overlap."""
        names.bucket(self.bucket)
        names.prefix(self.prefix)
        names.prefix(self.dest, "dest_prefix")
        if self.to not in FORMATS:
            msg = f"to must be one of {', '.join(FORMATS)}, got {self.to!r}"
            raise ValueError(msg)
        if not 1024 <= self.target_bytes <= MAX_TARGET_BYTES:
            msg = (f"target_bytes must be 1024 to {MAX_TARGET_BYTES} (5 GiB), "
                   f"got {self.target_bytes}")
            raise ValueError(msg)
        a, b = self.prefix + "/", self.dest + "/"
        if a.startswith(b) or b.startswith(a):
            msg = (f"dest_prefix {self.dest!r} overlaps prefix {self.prefix!r}: a table over "
                   "one would read the other and count rows twice")
            raise ValueError(msg)
        return self


@dataclass(slots=True)
class CompactReport:
    """What a run found and did (``dry_run``: what it would do; nothing was changed)."""

    day: str
    dest: str
    to: str
    dry_run: bool
    folders: int = 0
    unchanged_folders: int = 0
    sources: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    parts: int = 0
    parts_written: int = 0
    deleted_sources: int = 0
    stale_parts_removed: int = 0
    extra_json: SplitCounts = field(default_factory=SplitCounts)


def compact(s3: Any, options: CompactOptions) -> CompactReport:
    """Compact ``options.day`` under ``options.prefix`` (see the module docstring).

    Raises ``ValueError`` for bad options, :class:`CompactError` when a written part does
    not read back as written (no source of that folder is deleted), and botocore errors
    from S3 as they come (nothing is deleted in a folder until its check passed).
    """
    opts = options.checked()
    report = CompactReport(opts.day.isoformat(), opts.dest, opts.to, opts.dry_run)
    by_folder: dict[str, list[Source]] = {}
    for source in list_sources(s3, opts.bucket, opts.prefix, opts.day):
        by_folder.setdefault(source.folder, []).append(source)
    for folder in sorted(set(by_folder) | set(_manifest_folders(s3, opts))):
        _compact_folder(s3, opts, folder, by_folder.get(folder, []), report)
    return report


def _manifest_folders(s3: Any, opts: CompactOptions) -> list[str]:
    # Folders compacted before whose sources are all gone still count in the report.
    found = list_day_objects(s3, opts.bucket, opts.dest, opts.day,
                             lambda name: name == MANIFEST_NAME)
    return [f.folder for f in found]


def _compact_folder(s3: Any, opts: CompactOptions, folder: str, sources: list[Source],
                    report: CompactReport) -> None:
    manifest = _load_manifest(s3, opts, folder)
    plan = plan_folder(folder, sources, manifest, opts.to)
    report.folders += 1
    report.sources += len(sources)
    report.bytes_before += sum(s.size for s in sources)
    if plan.unchanged:
        report.unchanged_folders += 1
        held = manifest.parts if manifest else []
        report.rows += sum(p.rows for p in held)
        report.bytes_after += sum(p.size for p in held)
        report.parts += len(held)
        if manifest and opts.delete_sources and not opts.dry_run:
            _verify(s3, opts, held, manifest.rows)
            _delete_sources(s3, opts, plan, manifest, report)
        return
    parts = _write_parts(s3, opts, plan, report)
    report.parts += len(parts)
    report.bytes_after += sum(p.size for p in parts)
    if opts.dry_run:
        return
    new_manifest = next_manifest(plan, opts.to, parts)
    _verify(s3, opts, parts, new_manifest.rows)
    _put_manifest(s3, opts, folder, new_manifest)
    keep = {p.key for p in parts}
    stale = [k for k in _part_keys(s3, opts, folder) if k not in keep]
    _delete_keys(s3, opts.bucket, stale)
    report.stale_parts_removed += len(stale)
    if opts.delete_sources:
        _delete_sources(s3, opts, plan, new_manifest, report)


def _write_parts(s3: Any, opts: CompactOptions, plan: FolderPlan,
                 report: CompactReport) -> list[Part]:
    from ._parquet import ParquetSchemas

    schemas = ParquetSchemas() if opts.to == "parquet" else None
    parts: list[Part] = []

    def upload(number: int, file: IO[bytes], rows: int, digest: str) -> None:
        key = part_key(opts.dest, plan.folder, opts.day, plan.generation, number, opts.to)
        size = file.seek(0, 2)
        file.seek(0)
        if not opts.dry_run:
            s3.put_object(Bucket=opts.bucket, Key=key, Body=file,
                          Metadata={"rows": str(rows), "sha256": digest}, **describe(opts.to))
            report.parts_written += 1
        parts.append(Part(key, rows, size, digest))

    writer = PartWriter(opts.to, opts.target_bytes, upload,
                        (lambda lines: schemas.schema_for(plan.folder, lines)) if schemas
                        else None, opts.compression)
    expected = 0
    try:
        for part in plan.carried:
            got = 0
            for lines in part_lines(s3, opts.bucket, part.key):
                writer.add(lines)
                got += len(lines)
            if got != part.rows:
                msg = f"{part.key}: read {got} rows, its manifest says {part.rows}"
                raise CompactError(msg)
            expected += got
        for source in plan.new:
            lines = read_lines(s3, opts.bucket, source)
            writer.add(lines)
            expected += len(lines)
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    report.rows += expected
    report.extra_json.add(writer.counts)
    if writer.rows != expected or sum(p.rows for p in parts) != expected:
        msg = f"{plan.folder}: parts hold {sum(p.rows for p in parts)} rows, read {expected}"
        raise CompactError(msg)
    return parts


def _verify(s3: Any, opts: CompactOptions, parts: list[Part], expected_rows: int) -> None:
    """Read every part back: its SHA-256 and its rows must be what was written."""
    total = 0
    for part in parts:
        body = s3.get_object(Bucket=opts.bucket, Key=part.key)["Body"].read()
        rows = count_rows(part.key, body)
        if hashlib.sha256(body).hexdigest() != part.sha256 or rows != part.rows:
            msg = f"{part.key} reads back as {rows} rows / other bytes than written"
            raise CompactError(msg)
        total += rows
    if total != expected_rows:
        msg = f"parts hold {total} rows, the input had {expected_rows}: nothing deleted"
        raise CompactError(msg)


def _delete_sources(s3: Any, opts: CompactOptions, plan: FolderPlan, manifest: Manifest,
                    report: CompactReport) -> None:
    doomed = plan.deletable(manifest)
    if not doomed:
        return
    if not manifest.self_contained:
        # Recorded before any delete: a run cut short later still knows the parts hold them.
        manifest.self_contained = True
        _put_manifest(s3, opts, plan.folder, manifest)
    _delete_keys(s3, opts.bucket, [s.key for s in doomed])
    report.deleted_sources += len(doomed)


def _delete_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = keys[start:start + _DELETE_BATCH]
        answer = s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in batch], "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            msg = (f"{len(answer['Errors'])} deletes failed, e.g. {first.get('Key')}: "
                   f"{first.get('Code')}")
            raise CompactError(msg)


def _load_manifest(s3: Any, opts: CompactOptions, folder: str) -> Manifest | None:
    try:
        body = s3.get_object(Bucket=opts.bucket, Key=manifest_key(opts.dest, folder))
    except s3.exceptions.NoSuchKey:
        return None
    return Manifest.from_json(body["Body"].read())


def _put_manifest(s3: Any, opts: CompactOptions, folder: str, manifest: Manifest) -> None:
    s3.put_object(Bucket=opts.bucket, Key=manifest_key(opts.dest, folder),
                  Body=manifest.to_json(), ContentType="application/json")


def _part_keys(s3: Any, opts: CompactOptions, folder: str) -> list[str]:
    base = f"{opts.dest}/{folder}/"
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=opts.bucket, Prefix=base):
        for item in page.get("Contents", []):
            rest = item["Key"][len(base):]
            if "/" not in rest and is_part_name(rest):
                keys.append(item["Key"])
    return keys
