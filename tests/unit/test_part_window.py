"""The ranged copy's ordering and its failure owner, without sockets: which parts may start, which
one is hashed next, when a buffer may be reused; the first failure wins and cleans up once."""

from __future__ import annotations

import pytest
from wan_relay.ranged import Cancelled, PartWindow, TransferCoordinator


def test_at_most_width_parts_are_started_ahead_of_the_first_unfinished_one():
    window = PartWindow(count=10, width=3)
    assert window.to_start() == [0, 1, 2]
    assert window.to_start() == []  # each part is started once
    for index in (2, 1):  # downloaded and uploaded out of order: part 0 still holds the window
        window.downloaded(index)
        window.uploaded(index)
    assert window.to_start() == [] and window.next_to_hash() is None

    window.downloaded(0)
    assert window.next_to_hash() == 0
    window.hashed(0)
    assert window.to_start() == []  # hashed but not uploaded: its buffer is still needed
    window.uploaded(0)
    assert window.to_start() == [3]


def test_parts_are_hashed_strictly_in_order():
    window = PartWindow(count=3, width=3)
    window.to_start()
    window.downloaded(1)
    assert window.next_to_hash() is None
    with pytest.raises(ValueError, match="out of order"):
        window.hashed(1)
    window.downloaded(0)
    window.hashed(window.next_to_hash())
    assert window.next_to_hash() == 1


def test_a_buffer_is_reused_only_once_every_part_up_to_it_is_hashed_and_uploaded():
    window = PartWindow(count=4, width=2)
    window.to_start()
    for index in (0, 1):
        window.downloaded(index)
        window.hashed(index)
    window.uploaded(1)
    assert window.to_start() == []  # part 0 is not uploaded yet: its buffer is still in use
    window.uploaded(0)
    assert window.to_start() == [2, 3]


def test_the_window_is_done_when_every_part_is_hashed_and_uploaded():
    window = PartWindow(count=2, width=6)
    assert window.to_start() == [0, 1]
    for index in (1, 0):
        window.downloaded(index)
        window.uploaded(index)
    assert not window.done
    window.hashed(0)
    window.hashed(1)
    assert window.done


class _Answer:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_first_failure_wins_and_closes_the_answers_being_read():
    coordinator = TransferCoordinator()
    reading, finished = _Answer(), _Answer()
    coordinator.reading(reading)
    coordinator.reading(finished)
    coordinator.done_reading(finished)

    coordinator.fail(RuntimeError("first"))
    coordinator.fail(RuntimeError("second"))

    assert str(coordinator.exception) == "first"
    assert reading.closed and not finished.closed
    with pytest.raises(Cancelled):
        coordinator.raise_if_failed()
    late = _Answer()
    with pytest.raises(Cancelled):
        coordinator.reading(late)  # an answer opened after the failure is closed at once
    assert late.closed


def test_a_cancelled_part_is_not_the_failure():
    coordinator = TransferCoordinator()
    coordinator.fail(Cancelled())
    assert coordinator.exception is None


def test_failure_cleanups_run_once_newest_first_and_only_after_a_failure():
    ran: list[str] = []
    ok = TransferCoordinator()
    ok.on_failure(lambda: ran.append("abort"))
    ok.clean_up()
    assert ran == []

    failed = TransferCoordinator()
    failed.on_failure(lambda: ran.append("first made"))
    failed.on_failure(lambda: ran.append("last made"))
    failed.fail(RuntimeError("boom"))
    failed.clean_up()
    failed.clean_up()
    assert ran == ["last made", "first made"]
