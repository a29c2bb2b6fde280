"""The codec of an S3Handler: NDJSON compression, or Parquet files in batch mode.

``format="parquet"`` builds each batch object with :mod:`._parquet` in the upload thread,
where NDJSON batches are compressed: the object's key folder is its partition, whose
schema the first batch pins for the process (or ``parquet_schema`` gives). Values outside
it go to ``extra_json`` and are counted on the ledger (``parquet_outside_schema``,
``parquet_type_mismatches``, ``parquet_unparsed``).
"""

from __future__ import annotations

from ._encode import Codec, make_codec
from ._settings import HandlerConfig


def codec_for(c: HandlerConfig) -> Codec:
    """The codec settings ``c`` ask for (``make_codec`` unless ``format='parquet'``).

    Raises ``ImportError`` naming the ``parquet`` extra without pyarrow and ``ValueError``
    for a ``parquet_schema`` file that gives no columns.
    """
    if c.format != "parquet":
        return make_codec(c.compression, c.compress_level)
    from ._compact_sources import split_lines
    from ._parquet import ParquetSchemas, encode_parquet, parse_lines, require_pyarrow
    from ._parquet_schema import infer_schema
    from ._parquet_stream import ParquetStream, slices

    pa = require_pyarrow()
    schemas = ParquetSchemas(c.parquet_schema)
    compression = c.parquet_compression

    def sample(raw: bytes) -> bytes:
        # Batch sizing measures how well a sample compresses: an unpinned schema of its own.
        lines = split_lines(raw)
        schema = infer_schema(r for r in parse_lines(lines) if isinstance(r, dict))
        return encode_parquet(lines, schema, compression).body

    def for_key(key: str, raw: bytes) -> tuple[bytes, dict[str, int]]:
        # A batch may be a few hundred MB of JSON: convert it a slice at a time, so memory
        # holds one slice and one row group besides the batch itself.
        pieces = slices(raw)
        first = next(pieces, b"")
        schema = schemas.schema_for(key.rpartition("/")[0], split_lines(first))
        sink = pa.BufferOutputStream()
        stream = ParquetStream(sink, schema, compression)
        for piece in (first, *pieces):
            stream.add_blob(piece)
        stream.close()
        counts = stream.counts
        return sink.getvalue().to_pybytes(), {"parquet_outside_schema": counts.outside_schema,
                            "parquet_type_mismatches": counts.type_mismatch,
                            "parquet_unparsed": counts.unparsed}

    return Codec("parquet", sample, ".parquet", None, for_key)
