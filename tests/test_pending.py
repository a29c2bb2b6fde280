"""PendingRecords: what flush() knows about records that still await an outcome."""

from __future__ import annotations

from s3_log_handler._pending import PendingRecords


def flush_now(pending: PendingRecords) -> bool:
    """A flush that starts and ends at once (everything already settled)."""
    mark, since = pending.begin_flush()
    return pending.end_flush(mark, since, drained=not pending.pending_upto(mark))


class TestPendingRecords:
    def test_pending_until_every_record_up_to_the_mark_is_settled(self) -> None:
        """Out-of-order outcomes: the mark clears only once all records up to it settle."""
        pending = PendingRecords()
        first, second, third = pending.add(), pending.add(), pending.add()
        pending.settle([second], lost=False)
        assert pending.pending_upto(second)
        pending.settle([first], lost=False)
        assert not pending.pending_upto(second)
        assert pending.pending_upto(third)

    def test_a_loss_below_the_mark_is_reported_even_when_a_later_one_follows(self) -> None:
        """A loss after the flush's mark must not hide an earlier one before it."""
        pending = PendingRecords()
        kept, lost_early = pending.add(), pending.add()
        mark, since = pending.begin_flush()
        lost_late = pending.add()
        pending.settle([lost_early], lost=True)
        pending.settle([lost_late], lost=True)
        pending.settle([kept], lost=False)
        assert not pending.end_flush(mark, since, drained=True)
        assert not flush_now(pending)  # the late loss, reported by the next flush, once
        assert flush_now(pending)

    def test_concurrent_flushes_both_see_a_loss_in_their_range(self) -> None:
        """Two flushes that started together both report a loss both of them cover."""
        pending = PendingRecords()
        lost = pending.add()
        first = pending.begin_flush()
        second = pending.begin_flush()
        pending.settle([lost], lost=True)
        assert not pending.end_flush(*first, drained=True)
        assert not pending.end_flush(*second, drained=True)
        assert flush_now(pending)

    def test_a_flush_that_timed_out_reports_false_and_keeps_the_loss(self) -> None:
        """Not drained: False, and the loss is still reported by the next flush."""
        pending = PendingRecords()
        lost, slow = pending.add(), pending.add()
        pending.settle([lost], lost=True)
        assert not pending.end_flush(*pending.begin_flush(), drained=False)
        pending.settle([slow], lost=False)
        assert not flush_now(pending)
        assert flush_now(pending)

    def test_recovered_records_are_not_tracked(self) -> None:
        """Records from another owner's spool (number -1) never block a flush."""
        pending = PendingRecords()
        pending.settle([-1], lost=True)
        assert not pending.pending_upto(10)
        assert flush_now(pending)

    def test_memory_follows_what_is_pending_not_what_was_lost(self) -> None:
        """One record stuck at the head and 300,000 lost after it: the losses are one run and
        nothing settled is kept, so memory does not grow with the drops."""
        pending = PendingRecords()
        stuck = pending.add()
        for _ in range(300_000):
            pending.settle([pending.add()], lost=True)
        assert pending._pending == {stuck}
        assert (pending._firsts, pending._lasts) == ([1], [300_000])
        mark, since = pending.begin_flush()
        assert not pending.end_flush(mark, since, drained=not pending.pending_upto(mark))
        pending.settle([stuck], lost=False)
        assert not flush_now(pending)  # the losses are reported (once) when the head settles
        assert flush_now(pending)
        assert (pending._firsts, pending._lasts) == ([], [])

    def test_interleaved_losses_merge_into_runs_and_are_each_reported(self) -> None:
        """Losses out of order join their neighbours; a flush sees any loss in its range."""
        pending = PendingRecords()
        seqs = [pending.add() for _ in range(6)]
        for seq in (seqs[4], seqs[2], seqs[3], seqs[0]):
            pending.settle([seq], lost=True)
        assert (pending._firsts, pending._lasts) == ([0, 2], [0, 4])
        pending.settle([seqs[1], seqs[5]], lost=False)
        assert not flush_now(pending)
        assert flush_now(pending)

    def test_spilled_records_stay_pending_as_runs_until_settled(self) -> None:
        """Records held only on disk keep a flush waiting, cost one run for a stretch, and
        settle (delivered or lost) like any other."""
        pending = PendingRecords()
        head = pending.add()
        spilled = [pending.add() for _ in range(100_000)]
        for seq in spilled:
            pending.spill(seq)
        assert pending._pending == {head} and pending._spilled.runs == 1
        pending.settle([head], lost=False)
        assert pending.pending_upto(spilled[0])
        pending.settle(spilled[:-1], lost=False)
        assert pending.pending_upto(spilled[-1]) and not pending.pending_upto(spilled[-1] - 1)
        mark, since = pending.begin_flush()
        pending.settle([spilled[-1]], lost=True)
        assert not pending.end_flush(mark, since, drained=not pending.pending_upto(mark))
        assert not pending._pending and not pending._spilled
        assert flush_now(pending)

    def test_spilling_a_number_not_pending_changes_nothing(self) -> None:
        pending = PendingRecords()
        seq = pending.add()
        pending.settle([seq], lost=False)
        pending.spill(seq)
        assert not pending._spilled and not pending.pending_upto(seq)
