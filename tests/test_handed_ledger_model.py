"""A client's file of notes of what it handed out, against a simple model.

Takes are reserved, noted, settled (a later reply said the "got it" was read) and
dropped (settled with a new holder) in any order, by a file made with room for only a
few notes. What the next holder would read must always hold every note whose "got it"
may be unread, the newest of those settled, and nothing dropped; the file grows only when
the notes that must be kept do not fit.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from diskqueue.engine import handed, holders

SLOTS = 4
TAKES = st.builds(lambda seq, data, hold: ((b"ns", b"", seq, 0, hold), data),
                  st.integers(0, 11), st.sampled_from([b"a", b"b"]),
                  st.sampled_from([-1, 5]))


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.old_slots, handed.SLOTS = handed.SLOTS, SLOTS
        self.path = tempfile.mkdtemp()
        self.ledger = handed.Ledger(self.path)
        self.data: dict[handed.Take, bytes] = {}
        self.pending: set[handed.Take] = set()
        self.settled: list[handed.Take] = []  # oldest first
        self.dropped: set[handed.Take] = set()
        self.most_kept = SLOTS  # the most notes room was set aside for at once

    def teardown(self) -> None:
        handed.SLOTS = self.old_slots
        shutil.rmtree(self.path)

    @rule(batch=st.lists(TAKES, min_size=1, max_size=7, unique_by=lambda t: t[0]))
    def hand_out(self, batch: list[tuple[handed.Take, bytes]]) -> None:
        takes = [take for take, _ in batch]
        assert self.ledger.reserve(len(takes)) is None
        self.most_kept = max(self.most_kept, len(self.pending) + len(takes))
        self.ledger.note(takes, [data for _, data in batch])
        for take, data in batch:
            self.data[take] = data
            self.pending.add(take)
            self.dropped.discard(take)
            if take in self.settled:
                self.settled.remove(take)

    @rule(count=st.integers(1, 9))
    def not_handed_out(self, count: int) -> None:
        assert self.ledger.reserve(count) is None
        self.most_kept = max(self.most_kept, len(self.pending) + count)
        self.ledger.unreserve(count)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def reply_read(self, data: st.DataObject) -> None:
        take = data.draw(st.sampled_from(sorted(self.pending)))
        self.ledger.settled([take])
        self.pending.discard(take)
        self.settled.append(take)

    @precondition(lambda self: self.pending or self.settled)
    @rule(data=st.data())
    def settled_with_a_new_holder(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.pending | set(self.settled))),
                                   min_size=1))
        self.ledger.drop(chosen)
        self.pending -= chosen
        self.settled = [take for take in self.settled if take not in chosen]
        self.dropped |= chosen

    def _note(self, take: handed.Take) -> bytes:
        return handed.note(take[:3], self.data[take], take[4])

    @invariant()
    def the_next_holder_reads_what_it_must(self) -> None:
        notes = handed.read(self.path, holders.me())
        if not self.data:
            return
        assert notes is not None
        for take in self.pending:
            assert self._note(take) in notes
        # settled notes are overwritten oldest first: those left are the newest
        kept = [self._note(take) in notes for take in self.settled]
        assert kept == sorted(kept)
        live = {self._note(take) for take in self.pending | set(self.settled)}
        for take in self.dropped:
            assert self._note(take) not in notes or self._note(take) in live
        assert len(notes) <= len(self.pending) + len(self.settled)

    @invariant()
    def the_file_grows_only_when_it_must(self) -> None:
        if self.data:
            with open(handed.file_of(self.path, holders.me()), "rb") as fh:
                slots = len(fh.read()) // 16
            assert slots <= max(SLOTS, 2 * self.most_kept)


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)
test_ledger_against_a_model = LedgerMachine.TestCase
