"""Timers: stopping a controller that never started its workers (a standby)."""

from __future__ import annotations

from rollout.controller.timers import Timers


def test_timers_that_never_started_stop_quietly() -> None:
    # A standby that never led has never started its timers; SIGTERM (every rolling restart
    # of a two-replica controller) stopped it with SchedulerNotRunningError and exit 1.
    timers = Timers(lambda key: None)
    timers.stop()
    timers.stop()


def test_started_timers_stop_once_and_then_quietly() -> None:
    timers = Timers(lambda key: None)
    timers.start()
    timers.after("ns/name", 60)
    timers.stop()
    timers.stop()
