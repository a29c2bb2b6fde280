"""What ``compact`` does to one partition folder, decided from its sources and its manifest.

Pure functions and one small JSON document: the manifest ``_compacted.json`` that sits
beside a folder's compacted parts (a leading ``_`` hides it from Hive, Athena and Spark)
and records which sources (key and ETag) the parts hold, their rows and whether the parts
are now the only copy of some rows (sources deleted). That record is what makes a re-run
idempotent (same sources: nothing to do), keeps late records (new sources are compacted
with the existing parts, never instead of them) and never drops rows whose sources are
gone (deleted by ``--delete-sources`` or by a lifecycle rule).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date

from ._compact_sources import Source

MANIFEST_NAME = "_compacted.json"
EXTENSIONS = {"parquet": ".parquet", "ndjson": ".ndjson.gz"}
_PART = re.compile(r"\d{4}-\d{2}-\d{2}-g\d{4}-part-\d{5}(?:\.parquet|\.ndjson\.gz)")


@dataclass(frozen=True, slots=True)
class Part:
    """One compacted object: key, rows, bytes and SHA-256 of its body."""

    key: str
    rows: int
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """The record of a folder's current compacted parts (see the module docstring)."""

    generation: int
    format: str
    rows: int
    parts: list[Part]
    #: Every source whose rows the parts hold: key -> ETag.
    sources: dict[str, str]
    #: True once some of those rows exist nowhere but in the parts.
    self_contained: bool = False

    def to_json(self) -> bytes:
        """The manifest as sorted, indented JSON."""
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes) -> Manifest:
        """A manifest from :meth:`to_json`'s bytes; ``ValueError`` for anything else."""
        try:
            data = json.loads(body)
            return cls(int(data["generation"]), str(data["format"]), int(data["rows"]),
                       [Part(**p) for p in data["parts"]], dict(data["sources"]),
                       bool(data["self_contained"]))
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"not a compaction manifest: {exc}"
            raise ValueError(msg) from exc


@dataclass(slots=True)
class FolderPlan:
    """What to do in one folder: read ``carried`` parts and ``new`` sources into a new
    generation, or nothing (``unchanged``); ``deletable`` are the sources whose rows the
    parts hold once the plan is done."""

    folder: str
    sources: list[Source]
    manifest: Manifest | None
    carried: list[Part] = field(default_factory=list)
    new: list[Source] = field(default_factory=list)
    unchanged: bool = False

    @property
    def generation(self) -> int:
        """The generation the plan writes (the manifest's own when unchanged)."""
        current = self.manifest.generation if self.manifest else 0
        return current if self.unchanged else current + 1

    @property
    def self_contained(self) -> bool:
        """Whether the new parts will hold rows found nowhere else."""
        return bool(self.carried) or bool(self.manifest and self.manifest.self_contained
                                          and self.unchanged)

    def deletable(self, manifest: Manifest) -> list[Source]:
        """The sources present now whose rows ``manifest``'s parts hold (same ETag)."""
        return [s for s in self.sources if manifest.sources.get(s.key) == s.etag]


def plan_folder(folder: str, sources: Sequence[Source], manifest: Manifest | None,
                fmt: str) -> FolderPlan:
    """Decide what compacting ``folder`` means now.

    Without a manifest: compact the sources. With one whose sources are all still there
    and whose parts are not the only copy of anything: nothing to do when the sources are
    the same (key and ETag), else rebuild from the sources. Otherwise (sources deleted or
    expired): carry the parts and add only the sources they do not hold yet; nothing to do
    when there are none. A change of ``fmt`` rebuilds (or carries) too.
    """
    plan = FolderPlan(folder, list(sources), manifest)
    current = {s.key: s.etag for s in sources}
    if manifest is None:
        plan.new = list(sources)
        plan.unchanged = not sources
        return plan
    all_there = all(current.get(k) == e for k, e in manifest.sources.items())
    if all_there and not manifest.self_contained:
        plan.unchanged = current == manifest.sources and manifest.format == fmt
        plan.new = [] if plan.unchanged else list(sources)
        return plan
    plan.new = [s for s in sources if manifest.sources.get(s.key) != s.etag]
    plan.unchanged = not plan.new and manifest.format == fmt
    plan.carried = [] if plan.unchanged else list(manifest.parts)
    return plan


def part_key(dest: str, folder: str, day: date, generation: int, number: int,
             fmt: str) -> str:
    """``DEST/FOLDER/2025-11-01-g0001-part-00000.parquet``: the same inputs, the same key."""
    return (f"{dest}/{folder}/{day.isoformat()}-g{generation:04d}-part-{number:05d}"
            f"{EXTENSIONS[fmt]}")


def manifest_key(dest: str, folder: str) -> str:
    """Where ``folder``'s manifest lives under ``dest``."""
    return f"{dest}/{folder}/{MANIFEST_NAME}"


def is_part_name(name: str) -> bool:
    """True for a file name :func:`part_key` makes (stale ones may be removed)."""
    return _PART.fullmatch(name) is not None


def next_manifest(plan: FolderPlan, fmt: str, parts: list[Part]) -> Manifest:
    """The manifest after ``plan``'s new generation of ``parts`` was written and checked."""
    held = dict(plan.manifest.sources) if plan.carried and plan.manifest else {}
    held.update({s.key: s.etag for s in plan.new})
    return Manifest(plan.generation, fmt, sum(p.rows for p in parts), parts, held,
                    plan.self_contained)

