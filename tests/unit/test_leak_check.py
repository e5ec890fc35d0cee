"""The tests' leak check sees framepool's memfds (which /dev/shm never shows) and stops seeing them when
they are closed."""

from framepool.ipc.ring import POLICY_BLOCK, Doorbell, FrameRing
from tests.support.shm import framepool_memfds, shm_segments


def test_the_leak_check_counts_open_rings_and_doorbells() -> None:
    before = shm_segments()
    ring = FrameRing.create(2, 64, POLICY_BLOCK)
    bell = Doorbell.create()
    try:
        held = framepool_memfds()
        assert held["memfd:framepool-ring"] >= 1 and held["memfd:framepool-doorbell"] >= 1
        assert shm_segments() > before  # a leak would fail `shm_segments() == before`
    finally:
        ring.close()
        bell.close()
    assert shm_segments() == before
