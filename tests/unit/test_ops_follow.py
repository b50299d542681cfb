"""``ops.follow`` (``rollout status``, ``rollout get --watch``) over a scripted ClusterAccess:
a broken watch is re-established with backoff, a 410 Gone re-reads the Rollout, and an API that
stays away ends in ``Unavailable`` after the reconnection budget."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, cast

import pytest

from rollout.cluster.access import (
    ROLLOUTS,
    ClusterAccess,
    ClusterError,
    Gone,
    Obj,
    Resource,
    Unavailable,
    WatchEvent,
)
from rollout.ops import RECONNECT_FIRST_DELAY, Target, cmd_status, follow

Round = list[WatchEvent] | Exception | tuple[list[WatchEvent], Exception]


def rollout(rv: int, phase: str = "Progressing", generation: int = 1) -> Obj:
    return {
        "metadata": {
            "name": "reviews",
            "namespace": "shop",
            "resourceVersion": str(rv),
            "generation": generation,
        },
        "status": {"phase": phase, "observedGeneration": generation},
    }


class Clock:
    """Monotonic time that moves only when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedAccess:
    """``get`` returns ``current``; each ``watch`` call plays the next round: events, an error
    at opening, or events and then a broken stream. Records the versions watches resumed from."""

    def __init__(self, current: Obj, rounds: list[Round]) -> None:
        self.current = current
        self.rounds = rounds
        self.resumed_from: list[str] = []
        self.gets = 0

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        assert res == ROLLOUTS and (namespace, name) == ("shop", "reviews")
        self.gets += 1
        return self.current

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, **_: Any
    ) -> Iterator[WatchEvent]:
        self.resumed_from.append(resource_version)
        if not self.rounds:
            raise AssertionError("watched more often than scripted")
        round_ = self.rounds.pop(0)
        if isinstance(round_, Exception):
            raise round_
        events, broken = round_ if isinstance(round_, tuple) else (round_, None)
        yield from events
        if broken is not None:
            raise broken


def target(access: ScriptedAccess) -> tuple[Target, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Target(cast(ClusterAccess, access), "shop", out, err), out, err


def versions(objects: Iterator[Obj], count: int) -> list[str]:
    return [str(next(objects)["metadata"]["resourceVersion"]) for _ in range(count)]


def test_a_dropped_watch_is_resumed_from_the_last_version_with_backoff() -> None:
    access = ScriptedAccess(
        rollout(1),
        [
            ([WatchEvent("MODIFIED", rollout(2))], Unavailable("watch rollouts broke: reset")),
            Unavailable("watch rollouts: connection refused"),
            Unavailable("watch rollouts: connection refused"),
            [WatchEvent("MODIFIED", rollout(3))],
        ],
    )
    sleeps: list[float] = []
    t, _, err = target(access)
    objects = follow(t, "reviews", None, sleep=sleeps.append)
    assert versions(objects, 3) == ["1", "2", "3"]
    assert access.resumed_from == ["1", "2", "2", "2"]
    assert len(sleeps) == 3  # broken, refused, refused: each time twice as long, jittered
    for i, pause in enumerate(sleeps):
        assert RECONNECT_FIRST_DELAY * 2**i <= pause <= RECONNECT_FIRST_DELAY * 2**i * 1.2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith('warning: lost the watch of rollout "reviews"')
    assert access.gets == 1  # resumed, not re-read


def test_the_backoff_starts_again_after_a_watch_that_worked() -> None:
    refused = Unavailable("watch rollouts: connection refused")
    access = ScriptedAccess(
        rollout(1),
        [refused, [WatchEvent("MODIFIED", rollout(2))], refused, [WatchEvent("ADDED", rollout(3))]],
    )
    sleeps: list[float] = []
    t, _, err = target(access)
    assert versions(follow(t, "reviews", None, sleep=sleeps.append), 3) == ["1", "2", "3"]
    assert len(sleeps) == 2 and all(s <= RECONNECT_FIRST_DELAY * 1.2 for s in sleeps)
    assert err.getvalue().count("lost the watch") == 2


def test_gone_re_reads_the_rollout_and_watches_from_its_version() -> None:
    access = ScriptedAccess(rollout(1), [Gone("too old"), [WatchEvent("MODIFIED", rollout(9))]])
    t, _, err = target(access)
    objects = follow(t, "reviews", None, sleep=lambda _: None)
    assert next(objects)["metadata"]["resourceVersion"] == "1"
    access.current = rollout(8)
    assert versions(objects, 2) == ["8", "9"]
    assert access.resumed_from == ["1", "8"] and access.gets == 2
    assert err.getvalue() == ""


def test_an_api_that_stays_away_ends_in_unavailable_after_the_budget() -> None:
    refused = Unavailable("watch rollouts: connection refused")
    access = ScriptedAccess(rollout(1), [refused] * 50)
    clock = Clock()
    t, _, _ = target(access)
    objects = follow(t, "reviews", None, reconnect_for=10.0, sleep=clock.sleep, clock=clock)
    next(objects)
    with pytest.raises(Unavailable, match=r"connection refused \(gave up re-establishing"):
        next(objects)
    # 0.2 + 0.4 + 0.8 + 1.6 + 3.2 (jittered up to 20%) fit in 10 s; the next 5 s do not.
    assert len(clock.sleeps) == 5 and sum(clock.sleeps) <= 10.0
    assert len(access.resumed_from) == 6


def test_the_deadline_bounds_the_reconnection() -> None:
    access = ScriptedAccess(rollout(1), [Unavailable("refused")] * 50)
    clock = Clock()
    t, _, _ = target(access)
    objects = follow(t, "reviews", clock.now + 1.0, sleep=clock.sleep, clock=clock)
    next(objects)
    with pytest.raises(Unavailable):
        next(objects)
    assert sum(clock.sleeps) <= 1.0


def test_status_exits_through_the_reconnection() -> None:
    access = ScriptedAccess(
        rollout(1),
        [
            ([], Unavailable("watch rollouts broke: reset")),
            [WatchEvent("MODIFIED", rollout(2, "Healthy"))],
        ],
    )
    t, out, err = target(access)
    assert cmd_status(t, "reviews") == 0
    assert out.getvalue().splitlines()[-1] == 'rollout "reviews" is Healthy'
    assert "lost the watch" in err.getvalue()


def test_a_deleted_rollout_is_an_error_not_a_reconnection() -> None:
    access = ScriptedAccess(rollout(1), [[WatchEvent("DELETED", rollout(2))]])
    t, _, _ = target(access)
    objects = follow(t, "reviews", None, sleep=lambda _: None)
    next(objects)
    with pytest.raises(ClusterError, match="was deleted"):
        next(objects)


def test_each_watch_asks_the_server_to_end_it_within_the_window() -> None:
    """A frozen API server (or a half-open connection) sends nothing and closes nothing: the
    client notices only when its read timeout, the watch's timeoutSeconds + 30 s, runs out.
    Watches of at most WATCH_WINDOW (60 s) make that 90 s, not 330 s of silence per try."""
    from rollout.ops import WATCH_WINDOW

    asked: list[int] = []

    class Recording(ScriptedAccess):
        def watch(
            self, res: Resource, namespace: str | None, resource_version: str, **kwargs: Any
        ) -> Iterator[WatchEvent]:
            asked.append(kwargs["timeout_seconds"])
            return super().watch(res, namespace, resource_version)

    clock = Clock()
    access = Recording(rollout(1), [[], [], []])
    t, _, _ = target(access)
    objects = follow(t, "reviews", None, sleep=clock.sleep, clock=clock)
    assert versions(objects, 1) == ["1"]
    with pytest.raises(AssertionError, match="watched more often"):
        next(objects)
    assert asked == [WATCH_WINDOW] * 4 and WATCH_WINDOW <= 60  # the 4th: not scripted
    deadline_soon = follow(t, "reviews", clock.now + 12.5, sleep=clock.sleep, clock=clock)
    access.rounds = [[]]
    next(deadline_soon)
    with pytest.raises(AssertionError, match="watched more often"):
        next(deadline_soon)
    assert asked[4:] == [13, 13]  # a nearer deadline: the time left, rounded up


def test_status_prints_a_line_per_turn_not_per_measurement() -> None:
    """While a gate measures during a pause, only the counts in the message change: one line,
    not one per measurement; a check's phase changing, or the phase, is a new line."""

    def paused(rv: int, count: int, check_phase: str = "Running", phase: str = "Paused") -> Obj:
        obj = rollout(rv, phase)
        obj["status"].update(
            {
                "message": f"paused (CanaryPauseStep): gate Running: error-rate {count}",
                "analysis": {"phase": "Running", "checks": [{"name": "e", "phase": check_phase}]},
                "pauseConditions": [{"reason": "CanaryPauseStep"}],
            }
        )
        return obj

    access = ScriptedAccess(
        paused(1, 1),
        [
            [WatchEvent("MODIFIED", paused(rv, rv)) for rv in range(2, 30)]
            + [
                WatchEvent("MODIFIED", paused(30, 30, "Failed")),
                WatchEvent("MODIFIED", rollout(31, "Healthy")),
            ]
        ],
    )
    t, out, _ = target(access)
    assert cmd_status(t, "reviews") == 0
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["Paused", "Paused", "Healthy"]
    assert lines[3:] == ['rollout "reviews" is Healthy']
    assert lines[0].endswith("error-rate 1") and lines[1].endswith("error-rate 30")
