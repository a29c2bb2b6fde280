"""Line numbers kept as runs: the same answers as a set (or dict), memory per run only."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from s3_log_handler._records import Entry, SpoolRef
from s3_log_handler._runs import IndexRuns, SeqRuns
from s3_log_handler._spool import Spool

OPS = st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(-1, 200)), max_size=300)


class TestIndexRuns:
    @settings(max_examples=300)
    @given(OPS)
    def test_behaves_like_a_set(self, ops: list[tuple[bool, int, int]]) -> None:
        """Random adds and discards: membership, size, order and return values of a set."""
        runs, model = IndexRuns(), set()
        for add, value, _ in ops:
            if add:
                assert runs.add(value) == (value not in model)
                model.add(value)
            else:
                assert runs.discard(value) == (value in model)
                model.discard(value)
            assert len(runs) == len(model)
        assert list(runs) == sorted(model)
        assert all((v in runs) == (v in model) for v in range(-2, 64))

    def test_consecutive_numbers_are_one_run(self) -> None:
        runs = IndexRuns()
        for n in range(10_000):
            runs.add(n)
        runs.discard(5_000)
        assert (len(runs), runs.runs) == (9_999, 2)


class TestSeqRuns:
    @settings(max_examples=300)
    @given(OPS)
    def test_behaves_like_a_dict(self, ops: list[tuple[bool, int, int]]) -> None:
        """Random holds and pops: each line keeps the first number it was given."""
        runs, model = SeqRuns(), {}
        for add, index, seq in ops:
            if add:
                runs.add(index, seq)
                model.setdefault(index, max(seq, -1))
            else:
                assert runs.pop(index) == model.pop(index, None)
            assert len(runs) == len(model)
        assert all((i in runs) == (i in model) for i in range(-2, 64))
        for index in sorted(model):
            assert runs.pop(index) == model[index]
        assert not runs

    def test_records_spilled_in_order_are_one_run_and_pop_in_order(self) -> None:
        runs = SeqRuns()
        for n in range(10_000):
            runs.add(n, 500 + n)
        assert runs.runs == 1
        assert [runs.pop(n) for n in range(3)] == [500, 501, 502]
        assert runs.pop(5_000) == 5_500 and runs.runs == 2
        assert runs.pop(5_000) is None

    def test_adopted_lines_all_map_to_minus_one(self) -> None:
        runs = SeqRuns()
        for n in range(100):
            runs.add(n, -1)
        assert runs.runs == 1 and runs.pop(50) == -1 and runs.runs == 2


def test_a_spool_holding_100k_disk_only_records_costs_no_memory_per_record(
    tmp_path: Path,
) -> None:
    """100,000 records spilled to disk (the old bookkeeping: a dict entry each, ~28 MiB
    with the rest): the spool's bookkeeping grows by a few KiB (the entries themselves
    are not held: only their spool references, as the ledger keeps none either)."""
    spool = Spool(str(tmp_path), max_bytes=1 << 30)
    body = b'{"session_id":"s","pad":"' + b"p" * 100 + b'"}\n'
    refs: list[SpoolRef] = []
    for n in range(100_000):
        written = spool.append(Entry(body, 1_700_000_000.0 + n, "s", None))
        assert written.ref is not None
        refs.append(written.ref)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for seq, ref in enumerate(refs):
        spool.mark_disk_only(ref, seq)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 64 * 1024, after - before
    loaded = spool.load_backlog(1 << 30)
    assert [e.seq for e in loaded] == list(range(100_000))
    spool.release([e.ref for e in loaded if e.ref is not None])
    spool.close()


def test_first_is_the_smallest_number_held() -> None:
    runs = IndexRuns()
    assert runs.first is None
    for n in (7, 3, 4, 9):
        runs.add(n)
    assert runs.first == 3
    runs.discard(3)
    assert runs.first == 4
