"""BatchAccumulator with plain numbers: count, bytes and age triggers, partitions, drain."""

from __future__ import annotations

import calendar

from s3_log_handler._batch import Batch, BatchAccumulator
from s3_log_handler._keys import Partition
from s3_log_handler._policies import BatchPolicy
from s3_log_handler._records import Entry
from s3_log_handler._settings import BATCH_KEY_TEMPLATE

#: 2024-03-01T00:00:00Z, a midnight to cross.
MIDNIGHT = float(calendar.timegm((2024, 3, 1, 0, 0, 0)))
HOURLY = "{prefix}/year={year}/month={month}/day={day}/hour={hour}/{uuid}{ext}"


def entry(created: float = MIDNIGHT + 10, size: int = 10, name: str = "r") -> Entry:
    """A record of exactly ``size`` body bytes created at ``created``."""
    body = (name.encode() + b"x" * size)[: size - 1] + b"\n"
    return Entry(body, created, name, None)


def accumulator(max_records: int = 1000, max_bytes: int = 1 << 30, max_age: float = 3600.0,
                template: str = BATCH_KEY_TEMPLATE) -> BatchAccumulator:
    return BatchAccumulator(BatchPolicy(max_records, max_bytes, max_age, "{hour}" in template))


def names(batch: Batch) -> list[str]:
    return [e.record_id for e in batch.entries]


class TestCountTrigger:
    def test_batch_is_returned_exactly_when_it_reaches_max_records(self) -> None:
        """The Nth record closes the batch; the ones before it return nothing."""
        acc = accumulator(max_records=3)
        assert acc.add(entry(name="a"), now=0) == []
        assert acc.add(entry(name="b"), now=0) == []
        [full] = acc.add(entry(name="c"), now=0)
        assert full is not None
        assert names(full) == ["a", "b", "c"]
        assert len(acc) == 0

    def test_record_after_a_full_batch_opens_a_new_one(self) -> None:
        """A closed batch takes nothing more: the next record starts a fresh batch."""
        acc = accumulator(max_records=2)
        acc.add(entry(name="a"), now=0)
        acc.add(entry(name="b"), now=0)
        assert acc.add(entry(name="c"), now=5) == []
        [rest] = acc.drain()
        assert names(rest) == ["c"]
        assert rest.opened_at == 5

    def test_max_records_of_one_makes_every_record_its_own_batch(self) -> None:
        """With max_records=1 each add returns a one-record batch."""
        acc = accumulator(max_records=1)
        batches = [b for i in range(3) for b in acc.add(entry(name=str(i)), now=0)]
        assert [names(b) for b in batches] == [["0"], ["1"], ["2"]]


class TestBytesTrigger:
    def test_batch_closes_when_uncompressed_bytes_reach_max_bytes(self) -> None:
        """Bodies are summed; the record that reaches max_bytes is the batch's last."""
        acc = accumulator(max_bytes=100)
        for i in range(3):
            assert acc.add(entry(size=30, name=f"r{i}"), now=0) == []
        [full] = acc.add(entry(size=30, name="r3"), now=0)
        assert full is not None
        assert (len(full.entries), full.size) == (4, 120)

    def test_exact_fill_closes_the_batch(self) -> None:
        """A batch of exactly max_bytes is full."""
        acc = accumulator(max_bytes=60)
        assert acc.add(entry(size=30), now=0) == []
        [full] = acc.add(entry(size=30), now=0)
        assert full is not None and full.size == 60

    def test_one_record_larger_than_max_bytes_ships_alone(self) -> None:
        """An oversized record is not held back: it becomes a batch on its own."""
        acc = accumulator(max_bytes=50)
        [full] = acc.add(entry(size=500), now=0)
        assert full is not None and len(full.entries) == 1
        assert len(acc) == 0


class TestAgeTrigger:
    def test_batch_is_due_once_its_first_record_is_max_age_old(self) -> None:
        """Age counts from the batch's first record, not its latest one."""
        acc = accumulator(max_age=60)
        acc.add(entry(name="a"), now=100)
        acc.add(entry(name="b"), now=150)
        assert acc.due(now=159.9) == []
        [ripe] = acc.due(now=160)
        assert names(ripe) == ["a", "b"]
        assert acc.due(now=1000) == []

    def test_seconds_until_due_follows_the_oldest_open_batch(self) -> None:
        """The wait is the oldest batch's remaining age, never negative, None when empty."""
        acc = accumulator(max_age=60)
        assert acc.seconds_until_due(now=0) is None
        acc.add(entry(MIDNIGHT - 5), now=100)
        acc.add(entry(MIDNIGHT + 5), now=130)
        assert acc.seconds_until_due(now=110) == 50
        assert acc.seconds_until_due(now=500) == 0

    def test_only_ripe_batches_are_cut(self) -> None:
        """A younger batch of another partition stays open when an older one is due."""
        acc = accumulator(max_age=60)
        acc.add(entry(MIDNIGHT - 5, name="old"), now=100)
        acc.add(entry(MIDNIGHT + 5, name="young"), now=130)
        [ripe] = acc.due(now=165)
        assert names(ripe) == ["old"]
        assert len(acc) == 1
        assert acc.seconds_until_due(now=165) == 25

    def test_zero_max_age_makes_every_batch_due_at_once(self) -> None:
        """max_age=0 means a batch is due as soon as the worker looks."""
        acc = accumulator(max_age=0)
        acc.add(entry(), now=7)
        assert len(acc.due(now=7)) == 1


class TestPartitions:
    def test_records_either_side_of_midnight_never_share_a_batch(self) -> None:
        """Interleaved records of two UTC days become two batches, one per day."""
        acc = accumulator()
        for i in range(10):
            created = MIDNIGHT - 1 - i if i % 2 else MIDNIGHT + i
            acc.add(entry(created, name=str(i)), now=0)
        batches = {b.partition.day: b for b in acc.drain()}
        assert set(batches) == {"29", "01"}
        assert batches["29"].partition == Partition("2024", "02", "29", "")
        assert batches["01"].partition == Partition("2024", "03", "01", "")
        assert names(batches["29"]) == ["1", "3", "5", "7", "9"]
        assert names(batches["01"]) == ["0", "2", "4", "6", "8"]

    def test_last_microsecond_of_a_day_belongs_to_that_day(self) -> None:
        """The partition boundary is exactly midnight UTC."""
        acc = accumulator()
        acc.add(entry(MIDNIGHT - 0.000_001, name="before"), now=0)
        acc.add(entry(MIDNIGHT, name="at"), now=0)
        days = {b.partition.day: names(b) for b in acc.drain()}
        assert days == {"29": ["before"], "01": ["at"]}

    def test_hours_share_a_batch_when_the_template_has_no_hour(self) -> None:
        """A day template groups by day only: the partition's hour is empty."""
        acc = accumulator()
        for hour in range(3):
            acc.add(entry(MIDNIGHT + hour * 3600), now=0)
        [batch] = acc.drain()
        assert batch.partition.hour == ""
        assert len(batch.entries) == 3

    def test_hour_template_splits_batches_per_hour(self) -> None:
        """With {hour} in the template each UTC hour gets its own batch."""
        acc = accumulator(template=HOURLY)
        for hour in (0, 0, 1, 2, 2, 2):
            acc.add(entry(MIDNIGHT + hour * 3600 + 1), now=0)
        counts = {b.partition.hour: len(b.entries) for b in acc.drain()}
        assert counts == {"00": 2, "01": 1, "02": 3}

    def test_count_trigger_applies_per_partition(self) -> None:
        """Filling one day's batch neither cuts nor counts the other day's records."""
        acc = accumulator(max_records=3)
        acc.add(entry(MIDNIGHT - 1, name="y0"), now=0)
        acc.add(entry(MIDNIGHT + 1, name="t0"), now=0)
        acc.add(entry(MIDNIGHT + 2, name="t1"), now=0)
        acc.add(entry(MIDNIGHT - 2, name="y1"), now=0)
        [full] = acc.add(entry(MIDNIGHT + 3, name="t2"), now=0)
        assert full is not None
        assert names(full) == ["t0", "t1", "t2"]
        [left] = acc.drain()
        assert names(left) == ["y0", "y1"]

    def test_bytes_trigger_applies_per_partition(self) -> None:
        """Each partition's byte total is its own."""
        acc = accumulator(max_bytes=100)
        assert acc.add(entry(MIDNIGHT - 1, size=60), now=0) == []
        assert acc.add(entry(MIDNIGHT + 1, size=60), now=0) == []
        [full] = acc.add(entry(MIDNIGHT + 2, size=60), now=0)
        assert full is not None and full.partition.day == "01"


class TestDrain:
    def test_drain_returns_every_open_batch_and_empties_the_accumulator(self) -> None:
        """After drain nothing is open: len is 0, nothing is due, no wait is pending."""
        acc = accumulator()
        for i in range(5):
            acc.add(entry(MIDNIGHT + (i - 2) * 10, name=str(i)), now=0)
        assert len(acc) == 5
        batches = acc.drain()
        assert sorted(n for b in batches for n in names(b)) == ["0", "1", "2", "3", "4"]
        assert len(acc) == 0
        assert acc.drain() == []
        assert acc.due(now=10**9) == []
        assert acc.seconds_until_due(now=0) is None

    def test_batches_keep_records_in_arrival_order(self) -> None:
        """Within a batch records stay in the order they were added."""
        acc = accumulator()
        order = [str(i) for i in range(20)]
        for name in order:
            acc.add(entry(name=name), now=0)
        [batch] = acc.drain()
        assert names(batch) == order
        assert batch.size == sum(e.size for e in batch.entries)
