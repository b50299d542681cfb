"""The work queue: dedupe, one key on one worker, urgent keys first, capped backoff."""

from __future__ import annotations

import time

from rollout.controller.metrics import Metrics
from rollout.controller.queue import WorkQueue
from rollout.controller.runtime import is_abort, is_operator_action, operator_intent


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
    assert [queue.get(timeout=0) for _ in range(4)] == ["c", "d", "a", "b"]


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
    requested = operator_intent(rollout(1, pausedByUser=True))  # the Argo CD pause action
    assert is_operator_action(running, requested)
    assert not is_operator_action(requested, user)  # the controller took the request


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
    queue.add("b", urgent=True)  # queued already: moved among the urgent ones, after abort-me
    assert queue.get(timeout=0, urgent_only=True) == "abort-me"
    assert queue.get(timeout=0, urgent_only=True) == "b"
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


def test_urgent_keys_are_served_first_come_first_served() -> None:
    """A stream of urgent keys never overtakes an older one (an abort is not starved by
    later urgent keys), and an urgent re-add of an urgent key keeps its place."""
    queue = WorkQueue()
    queue.add("abort-1", urgent=True)
    queue.add("abort-2", urgent=True)
    queue.add("abort-1", urgent=True)  # already urgent: keeps its place, not duplicated
    queue.add("ordinary")
    queue.add("ordinary", urgent=True)  # promoted: after the urgent ones before it
    queue.add("abort-3", urgent=True)
    assert len(queue) == 4
    taken = [queue.get(timeout=0, urgent_only=True) for _ in range(4)]
    assert taken == ["abort-1", "abort-2", "ordinary", "abort-3"]
    assert queue.get(timeout=0) is None


def test_a_stream_of_urgent_keys_does_not_starve_an_ordinary_key() -> None:
    """Ordinary workers share themselves between urgent and ordinary keys: an ordinary key is
    taken though urgent keys keep coming faster than they are served."""
    queue = WorkQueue()
    queue.add("ordinary")
    served: list[str] = []
    for i in range(50):
        queue.add(f"urgent-{i}", urgent=True)
        queue.add(f"urgent-{i}-b", urgent=True)  # two urgent keys for each one served
        key = queue.get(timeout=0)
        assert key is not None
        served.append(key)
        queue.done(key)
        if key == "ordinary":
            break
    assert "ordinary" in served and len(served) <= 4, served


def test_hammered_by_threads_no_key_is_on_two_workers_and_no_add_is_lost() -> None:
    """Two ordinary workers and the urgent one against two threads adding 20 keys, urgent or
    not, at random: a key is never held by two workers at once, every key is taken after its
    last add, and shutting down ends every worker waiting in ``get`` at once."""
    import random
    import threading

    queue = WorkQueue()
    keys = [f"k{i}" for i in range(20)]
    lock = threading.Lock()
    held: set[str] = set()
    clashes: list[str] = []
    seq = 0
    last_add: dict[str, int] = {}
    last_get: dict[str, int] = {}
    taken = 0

    def work(urgent_only: bool) -> None:
        nonlocal seq, taken
        while True:
            key = queue.get(urgent_only=urgent_only)
            if key is None:
                return
            with lock:
                if key in held:
                    clashes.append(key)
                held.add(key)
                seq += 1
                last_get[key] = seq
                taken += 1
            sum(range(200))  # a little work, with the key held
            with lock:
                held.discard(key)
            queue.done(key)

    def produce(seed: int) -> None:
        nonlocal seq
        rng = random.Random(seed)
        for _ in range(3000):
            key = rng.choice(keys)
            with lock:
                seq += 1
                last_add[key] = seq
            queue.add(key, urgent=rng.random() < 0.3)

    workers = [threading.Thread(target=work, args=(u,)) for u in (False, False, True)]
    producers = [threading.Thread(target=produce, args=(seed,)) for seed in (1, 2)]
    for thread in workers + producers:
        thread.start()
    for thread in producers:
        thread.join(30)

    def settled() -> bool:
        with lock:
            return not held and all(last_get.get(k, 0) > n for k, n in last_add.items())

    deadline = time.monotonic() + 30
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert settled(), {k: (n, last_get.get(k)) for k, n in last_add.items()}
    assert clashes == []
    assert len(queue) == 0 and taken >= len(last_add)
    queue.shut_down()
    for thread in workers:
        thread.join(5)
    assert not any(thread.is_alive() for thread in workers)


def test_the_controllers_own_status_writes_are_not_urgent() -> None:
    """The echo of a write of the controller's is not an operator's action: a timed pause it
    ended as it advanced a step (every Rollout, every pause step: under load they crowded the
    urgent worker and aborts waited behind them), or promoteFull it cleared once promoted."""
    paused = operator_intent(
        rollout(1, currentStepIndex=1, pauseConditions=[{"reason": "CanaryPauseStep"}])
    )
    advanced = operator_intent(rollout(1, currentStepIndex=2))
    assert not is_operator_action(paused, advanced)
    promoted = operator_intent(rollout(1, currentStepIndex=1))  # `rollout promote`
    assert is_operator_action(paused, promoted)
    full = operator_intent(rollout(1, currentStepIndex=1, promoteFull=True))
    assert is_operator_action(promoted, full)  # `rollout promote --full`
    assert not is_operator_action(full, operator_intent(rollout(1, currentStepIndex=3)))
    user = [{"reason": "PausedByUser"}]
    by_user = operator_intent(rollout(1, currentStepIndex=1, pauseConditions=user))
    assert is_operator_action(by_user, operator_intent(rollout(1, currentStepIndex=1)))  # resume
    assert is_operator_action(by_user, operator_intent(rollout(1, currentStepIndex=2)))


def test_an_abort_is_told_from_the_other_operator_actions() -> None:
    running = operator_intent(rollout(1, currentStepIndex=1))
    aborted = operator_intent(rollout(1, currentStepIndex=1, abort=True))
    assert is_abort(running, aborted)
    assert not is_abort(aborted, running)  # retry
    assert not is_abort(running, operator_intent(rollout(2, currentStepIndex=1)))


def test_an_abort_goes_before_a_burst_of_other_urgent_keys() -> None:
    """Forty new specs applied at once are urgent too: an abort after them still goes first,
    to the urgent worker and to an ordinary one (queued, or made an abort while processed)."""
    queue = WorkQueue()
    for i in range(40):
        queue.add(f"spec-{i}", urgent=True)
    queue.add("o")
    queue.add("abort-1", urgent=True, abort=True)
    queue.add("spec-5", abort=True)  # queued as urgent: an abort now, after abort-1
    queue.add("abort-1", urgent=True)  # already an abort: stays one, not duplicated
    assert len(queue) == 42
    assert queue.get(timeout=0, urgent_only=True) == "abort-1"
    assert queue.get(timeout=0) == "spec-5"
    queue.add("spec-5", urgent=True, abort=True)  # while processed
    queue.add("spec-5")
    queue.done("spec-5")
    assert queue.get(timeout=0, urgent_only=True) == "spec-5"
    assert queue.get(timeout=0, urgent_only=True) == "spec-0"


def test_a_failed_urgent_key_is_retried_as_urgent() -> None:
    """An abort whose reconcile failed is retried (the timer's plain ``add`` after the
    backoff) at its level, not behind every ordinary key; a success forgets that."""
    queue = WorkQueue()
    queue.add("a", abort=True)
    assert queue.get(timeout=0, urgent_only=True) == "a"
    assert queue.backoff("a") == queue.base_delay
    queue.done("a")
    queue.add("b")
    queue.add("c", urgent=True)
    queue.add("a")  # the retry
    assert queue.get(timeout=0, urgent_only=True) == "a"
    queue.forget("a")  # it succeeded
    queue.done("a")
    queue.add("a")
    assert [queue.get(timeout=0, urgent_only=True) for _ in range(2)] == ["c", None]
    assert [queue.get(timeout=0) for _ in range(2)] == ["b", "a"]
