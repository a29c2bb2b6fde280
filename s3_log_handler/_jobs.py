"""Jobs: one object to upload each, with its records and its key. Pure: no I/O, no threads."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ._batch import Batch
from ._fields import FieldReader
from ._keys import Partition, render_key
from ._records import Entry


@dataclass(slots=True)
class Job:
    """One object to upload: its records, its key (fixed, so a retry overwrites) and body.

    ``internal_failures`` counts attempts that failed in our own code (compression), not in
    the network: past a cap the records are dead-lettered ``internal_error``.
    """

    entries: list[Entry]
    key: str
    record_id: str
    body: bytes | None = None
    internal_failures: int = 0
    #: The batch's ``{field:...}`` partition values (its compression ratio is learned per
    #: values); empty in object mode.
    fields: tuple[str, ...] = ()


class JobMaker:
    """Names jobs: object mode keeps the key each record got at emit time; batch mode gives
    each batch a new key (``{seq}`` numbers this handler's batches 1, 2, 3, ...)."""

    def __init__(self, template: str, prefix: str, suffix: str) -> None:
        self._template = template
        self._prefix = prefix
        # Parquet (``.parquet``) is a file format of its own, not a compression of JSON.
        self._object_ext = suffix if suffix == ".parquet" else ".json" + suffix
        self._batch_ext = suffix if suffix == ".parquet" else ".ndjson" + suffix
        self._batch_seq = itertools.count(1)
        self._fields = FieldReader(template, None)

    def fields_of(self, entry: Entry) -> tuple[str, ...]:
        """``entry``'s ``{field:...}`` partition values: read at emit time, or from its body
        for a record recovered from a spool."""
        if entry.fields is not None:
            return entry.fields
        return self._fields.values_of_line(entry.body) if self._fields.paths else ()

    def object_job(self, entry: Entry) -> Job:
        """The job that uploads one record under the key it got at emit time.

        A record spooled by a batch-mode handler has no key: it gets its object-mode key now.
        """
        key = entry.key or render_key(self._template, prefix=self._prefix,
                                      ext=self._object_ext,
                                      partition=Partition.of(entry.created),
                                      record_id=entry.record_id,
                                      fields=self.fields_of(entry))
        return Job([entry], key, entry.record_id)

    def batch_job(self, batch: Batch) -> Job:
        """The job that uploads one batch as an NDJSON object under a new unique key."""
        key = render_key(self._template, prefix=self._prefix, partition=batch.partition,
                         ext=self._batch_ext, seq=next(self._batch_seq), fields=batch.fields)
        return Job(batch.entries, key, "", fields=batch.fields)
