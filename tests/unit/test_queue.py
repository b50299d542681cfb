"""The work queue: dedupe, one key on one worker, urgent keys first, capped backoff."""

from __future__ import annotations

import time

from rollout.controller.metrics import Metrics
from rollout.controller.queue import WorkQueue
from rollout.controller.runtime import is_operator_action, operator_intent


def test_a_key_is_queued_once_and_requeued_after_processing() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 1
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # while processing: not handed to a second worker
    assert queue.get(timeout=0) is None
    queue.done("a")
    assert queue.get(timeout=0) == "a"


def test_an_urgent_key_jumps_the_queue() -> None:
    queue = WorkQueue()
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.add("c", urgent=True)
    queue.add("d", urgent=True)
    assert [queue.get(timeout=0) for _ in range(4)] == ["d", "c", "a", "b"]


def test_backoff_doubles_and_is_capped() -> None:
    queue = WorkQueue(base_delay=0.1, max_delay=0.5)
    assert [queue.backoff("a") for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    queue.forget("a")
    assert queue.backoff("a") == 0.1


def rollout(generation: int, **status: object) -> dict[str, object]:
    return {"metadata": {"generation": generation}, "status": status}


def test_operator_actions_are_urgent_and_the_controllers_own_pauses_are_not() -> None:
    paused = operator_intent(rollout(1, pauseConditions=[{"reason": "CanaryPauseStep"}]))
    running = operator_intent(rollout(1))
    assert not is_operator_action(running, paused)  # the controller entered a pause step
    assert is_operator_action(paused, running)  # promote lifted it
    assert is_operator_action(running, operator_intent(rollout(1, abort=True)))
    assert is_operator_action(running, operator_intent(rollout(2)))
    user = operator_intent(rollout(1, pauseConditions=[{"reason": "PausedByUser"}]))
    assert is_operator_action(running, user)


def test_an_urgent_key_already_first_or_being_processed_stays_where_it_is() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("a", urgent=True)  # already first
    assert queue.get(timeout=0) == "a"
    queue.add("c")
    queue.add("a", urgent=True)  # being processed: queued again once done, and first
    queue.add("d")
    queue.done("a")
    assert [queue.get(timeout=0) for _ in range(4)] == ["a", "b", "c", "d"]
    queue.add("b")  # not urgent while processing: queued again at the end
    queue.add("e")
    queue.done("b")
    assert [queue.get(timeout=0) for _ in range(2)] == ["e", "b"]


def test_the_queue_wait_runs_from_the_first_pending_add_to_get() -> None:
    waits: list[float] = []
    queue = WorkQueue(on_wait=waits.append)
    queue.add("a")
    queue.add("b")
    start = time.monotonic()
    while time.monotonic() - start < 0.05:
        queue.add("a")  # deduplicated: the wait still counts from the first add
    assert queue.get(timeout=0) == "a"
    assert len(waits) == 1 and waits[0] >= 0.05
    queue.add("a")  # while processing
    queue.done("a")
    assert queue.get(timeout=0) == "b"
    assert queue.get(timeout=0) == "a"
    assert len(waits) == 3 and all(w >= 0 for w in waits)


def test_phase_counts_follow_each_rollout_and_forget() -> None:
    metrics = Metrics()

    def count(phase: str) -> float | None:
        return metrics.registry.get_sample_value("rollout_rollouts", {"phase": phase})

    metrics.observe_rollout("ns/a", "Progressing", 25)
    metrics.observe_rollout("ns/b", "Progressing", 25)
    metrics.observe_rollout("ns/a", "Healthy", 0)
    assert (count("Progressing"), count("Healthy"), count("Paused")) == (1, 1, 0)
    metrics.observe_rollout("ns/b", None, 0)  # invalid: no phase
    assert count("Progressing") == 0
    weight = {"namespace": "ns", "rollout": "a"}
    assert metrics.registry.get_sample_value("rollout_canary_weight", weight) == 0
    metrics.forget("ns/a")
    metrics.forget("ns/gone")
    assert (count("Progressing"), count("Healthy")) == (0, 0)
    assert metrics.registry.get_sample_value("rollout_canary_weight", weight) is None


def test_the_urgent_worker_takes_only_urgent_keys() -> None:
    """Every worker busy, a long queue: the worker kept for urgent keys takes an abort at once
    and never takes an ordinary key."""
    queue = WorkQueue()
    for key in ("a", "b", "c"):
        queue.add(key)
    assert queue.get(timeout=0, urgent_only=True) is None  # nothing urgent: it waits
    queue.add("abort-me", urgent=True)
    queue.add("b", urgent=True)  # queued already: moved among the urgent ones, first
    assert queue.get(timeout=0, urgent_only=True) == "b"
    assert queue.get(timeout=0, urgent_only=True) == "abort-me"
    assert queue.get(timeout=0, urgent_only=True) is None
    assert [queue.get(timeout=0) for _ in range(2)] == ["a", "c"]
    assert len(queue) == 0


def test_a_key_made_urgent_while_processed_goes_to_the_urgent_worker_when_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("z")
    assert queue.get(timeout=0) == "a"
    queue.add("a", urgent=True)
    assert queue.get(timeout=0, urgent_only=True) is None  # still processed elsewhere
    queue.done("a")
    assert queue.get(timeout=0, urgent_only=True) == "a"
    assert queue.get(timeout=0) == "z"


def test_an_urgent_key_wakes_a_waiting_urgent_worker() -> None:
    import threading

    queue = WorkQueue()
    taken: list[str | None] = []
    worker = threading.Thread(target=lambda: taken.append(queue.get(5, urgent_only=True)))
    worker.start()
    queue.add("ordinary")  # wakes one waiter; the urgent worker must not take it
    queue.add("abort-me", urgent=True)
    worker.join(6)
    assert taken == ["abort-me"]
    assert queue.get(timeout=0) == "ordinary"


def test_an_ordinary_key_wakes_an_ordinary_worker_while_the_urgent_one_waits_too() -> None:
    import threading

    queue = WorkQueue()
    taken: list[str | None] = []
    urgent = threading.Thread(target=lambda: queue.get(0.5, urgent_only=True))
    urgent.start()
    time.sleep(0.05)  # the urgent worker waits first
    ordinary = threading.Thread(target=lambda: taken.append(queue.get(30)))
    ordinary.start()
    time.sleep(0.05)
    started = time.monotonic()
    queue.add("ordinary")
    ordinary.join(30)
    assert taken == ["ordinary"]
    assert time.monotonic() - started < 0.4  # woken at once, not by the urgent one's timeout
    urgent.join(1)
