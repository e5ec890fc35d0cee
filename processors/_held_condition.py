"""A condition that must hold for a minimum duration to start and to end (worker process): the state
machine behind start/end event pairs (sharpness's blur, brightness's too dark / too bright).

A state starts when its entry condition has held on every frame for `min_duration_us` of media time
(measured from the first frame of the run to the current frame), and ends when its exit condition has
held as long. Both transitions are dated by the first frame of their run, so an event reports when the
change began, not when it became certain; a run broken by one frame starts over. Processors pass an
exit condition stricter than "not entering" (a hysteresis margin), so a value hovering at the threshold
produces neither a storm of events nor a state that never ends.
"""

from __future__ import annotations

from typing import Literal

Transition = Literal["start", "end"]


class HeldCondition:
    """Tracks one state; `update` once per frame, in time order."""

    def __init__(self, min_duration_us: int) -> None:
        self.min_duration_us = min_duration_us
        self.active = False
        self.since_us = 0  # when the current state began (the first frame of its run)
        self.previous_since_us = 0  # when the state that just ended began
        self._run_start_us: int | None = None  # first frame of the run towards the other state

    def update(self, entering: bool, leaving: bool, time_us: int) -> Transition | None:
        """Feed one frame: whether it satisfies the entry and the exit condition. Returns the transition
        this frame completes, if any (`since_us` is then the first frame of the run that caused it)."""
        towards = leaving if self.active else entering
        if not towards:
            self._run_start_us = None
            return None
        if self._run_start_us is None:
            self._run_start_us = time_us
        if time_us - self._run_start_us < self.min_duration_us:
            return None
        self.previous_since_us, self.since_us = self.since_us, self._run_start_us
        self._run_start_us = None
        self.active = not self.active
        return "start" if self.active else "end"
