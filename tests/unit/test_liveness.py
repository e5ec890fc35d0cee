"""What the supervisor believes about a worker comes from the supervisor: pings it sent, the kernel's CPU."""

import os
import time

from framepool.pool.liveness import MAX_OUTSTANDING, PingBook, kernel_cpu_seconds


def test_a_pong_counts_only_for_an_outstanding_ping() -> None:
    book = PingBook()
    assert not book.answered(1)  # nothing sent: unsolicited
    book.sent(1)
    book.sent(2)
    assert book.answered(1)
    assert not book.answered(1)  # answered once only
    assert book.answered(2)
    assert not book.answered(3)  # never sent


def test_a_late_pong_settles_the_older_pings_too() -> None:
    book = PingBook()
    for seq in range(1, 5):
        book.sent(seq)
    assert book.answered(3)
    assert not book.answered(1) and not book.answered(2)
    assert book.answered(4)


def test_only_the_newest_pings_stay_outstanding() -> None:
    book = PingBook()
    for seq in range(1, MAX_OUTSTANDING + 3):
        book.sent(seq)
    assert not book.answered(1)
    assert book.answered(MAX_OUTSTANDING + 2)


def test_kernel_cpu_seconds_follows_the_process_cpu_time() -> None:
    before = kernel_cpu_seconds(os.getpid())
    spent = time.process_time()
    while time.process_time() - spent < 0.2:
        pass
    after = kernel_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert 0.1 <= after - before <= 1.0
    assert kernel_cpu_seconds(2**22 + 1) is None  # above pid_max: no such process
