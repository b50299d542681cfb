"""The work queue: one key per Rollout, deduplicated, never on two workers at once.

Semantics of client-go's workqueue: a key added while queued is not queued twice; a key added
while a worker processes it is queued again once that worker is done; failures requeue with
exponential backoff, capped; ``forget`` resets a key's backoff after a success. One addition:
an urgent key (an operator's abort, promote, pause, or a new spec) jumps the queue, so a busy
controller still answers an abort at once; and ``get(urgent_only=True)`` takes only urgent
keys, for a worker kept for them (the controller runs one beside ``--workers``), so that an
abort waits for neither a long queue nor for a worker to finish its reconcile.

Three levels, each first come, first served: aborts (``add(abort=True)``: what takes traffic
off a canary goes before everything, a burst of new specs included), the other urgent keys,
then the ordinary ones. A later key never overtakes an earlier one of its level, so no stream
of urgent keys can starve an abort; and an ordinary worker takes at most ``URGENT_RUN`` urgent
keys in a row while an ordinary key waits, then that ordinary key, so no stream of urgent keys
can starve the others either (the urgent worker keeps taking urgent keys only).

A key whose reconcile failed keeps the level it was taken at until it succeeds (``backoff``
records it, ``forget`` drops it): the retry, a timer's plain ``add`` after the backoff, goes
where the failed attempt was, so an abort that met a conflict is not retried behind every
ordinary key.

Every operation is O(1) in the number of keys (an ordered dict per level: membership, moving a
key up a level and pop-front without a scan). ``on_wait`` receives each key's queue wait in
seconds when a worker takes it: from the first ``add`` not yet served (an add while the key is
processed counts from then, so the wait includes that processing) to ``get``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

# How many urgent keys an ordinary worker takes in a row while an ordinary key waits.
URGENT_RUN = 3

ABORT, URGENT, ORDINARY = 0, 1, 2  # levels, served in this order


class WorkQueue:
    def __init__(
        self,
        *,
        base_delay: float = 0.05,
        max_delay: float = 30.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._cond = threading.Condition()
        # the queued keys of each level, first first
        self._levels: tuple[OrderedDict[str, None], ...] = tuple(OrderedDict() for _ in range(3))
        self._since: dict[str, float] = {}  # key -> monotonic time of its first pending add
        self._raised: dict[str, int] = {}  # level asked while a worker processed the key
        self._taken: dict[str, int] = {}  # level each key being processed was taken at
        self._retry: dict[str, int] = {}  # level a failed urgent key is retried at
        self._on_wait = on_wait
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._run = 0  # urgent keys taken in a row by ordinary workers while others waited
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: str, *, urgent: bool = False, abort: bool = False) -> None:
        """Queue ``key``; an ``urgent`` one (an operator's action) before the ordinary ones, an
        ``abort`` before every other."""
        with self._cond:
            if self._shutdown:
                return
            level = min(ABORT if abort else URGENT if urgent else ORDINARY, self._retry_level(key))
            if key in self._processing:
                # queued again once its worker is done, at the highest level asked meanwhile
                self._raised[key] = min(level, self._raised.get(key, ORDINARY))
            if key in self._dirty:
                for higher in range(level + 1, ORDINARY + 1):
                    if self._levels[higher].pop(key, False) is None:  # queued lower: move up
                        self._put(key, level)
                        break
                return
            self._dirty.add(key)
            self._since[key] = time.monotonic()
            if key not in self._processing:
                self._put(key, level)

    def _put(self, key: str, level: int) -> None:
        """Queue ``key`` last of its level (caller holds the lock)."""
        self._levels[level][key] = None
        # Every waiter: a single notify could wake only the urgent worker, which does not take
        # an ordinary key, leaving it for a worker's next timeout.
        self._cond.notify_all()

    def get(self, timeout: float | None = None, *, urgent_only: bool = False) -> str | None:
        """The next key (now being processed), or None on shutdown or timeout; with
        ``urgent_only``, the next urgent one (an abort first)."""
        aborts, urgent, ordinary = self._levels
        with self._cond:
            while not (aborts or urgent or (ordinary and not urgent_only)) and not self._shutdown:
                if not self._cond.wait(timeout):
                    return None
            if self._shutdown:
                return None
            level = self._next(urgent_only)
            key, _ = self._levels[level].popitem(last=False)
            self._taken[key] = level
            self._dirty.discard(key)
            self._processing.add(key)
            since = self._since.pop(key, None)
            if self._on_wait is not None and since is not None:
                self._on_wait(time.monotonic() - since)
            return key

    def _next(self, urgent_only: bool) -> int:
        """The level to take from (caller holds the lock; a level it may take holds a key)."""
        aborts, urgent, ordinary = self._levels
        first = ABORT if aborts else URGENT
        if urgent_only or not ordinary:
            return first
        if not (aborts or urgent) or self._run >= URGENT_RUN:
            self._run = 0
            return ORDINARY
        self._run += 1
        return first

    def _retry_level(self, key: str) -> int:
        return self._retry.get(key, ORDINARY)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            self._taken.pop(key, None)
            level = self._raised.pop(key, ORDINARY)
            if key in self._dirty:
                self._put(key, level)

    def backoff(self, key: str) -> float:
        """Record a failure of ``key``; the delay before its next attempt."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            taken = min(self._taken.get(key, ORDINARY), self._retry_level(key))
            if taken < ORDINARY:
                self._retry[key] = taken
        return float(min(self.base_delay * (2**failures), self.max_delay))

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)
            self._retry.pop(key, None)

    def __len__(self) -> int:
        with self._cond:
            return sum(len(level) for level in self._levels)

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
