"""Timers: wake a Rollout's key at a time the planner asked for (pause end, measurement).

One apscheduler job per key (the only module importing apscheduler). A key keeps its earliest
pending wake: asking for a later one while an earlier one is pending changes nothing, so a
reconcile can never postpone a deadline another reconcile set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED


class Timers:
    def __init__(self, fire: Callable[[str], None]) -> None:
        self._fire = fire
        self._scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> None:
        self._scheduler.start()

    def after(self, key: str, seconds: float) -> None:
        when = datetime.now(UTC) + timedelta(seconds=max(seconds, 0.0))
        job = self._scheduler.get_job(key)
        if job is not None and job.next_run_time is not None and job.next_run_time <= when:
            return
        self._scheduler.add_job(
            self._fire,
            "date",
            run_date=when,
            args=[key],
            id=key,
            replace_existing=True,
            misfire_grace_time=None,
        )

    def cancel(self, key: str) -> None:
        try:
            self._scheduler.remove_job(key)
        except JobLookupError:
            pass

    def pending(self) -> int:
        return len(self._scheduler.get_jobs())

    def stop(self) -> None:
        """Stop firing; a no-op when never started (a standby that never led)."""
        if self._scheduler.state != STATE_STOPPED:
            self._scheduler.shutdown(wait=False)
