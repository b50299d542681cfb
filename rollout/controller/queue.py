"""The work queue: one key per Rollout, deduplicated, never on two workers at once.

Semantics of client-go's workqueue: a key added while queued is not queued twice; a key added
while a worker processes it is queued again once that worker is done; failures requeue with
exponential backoff, capped; ``forget`` resets a key's backoff after a success. One addition:
an urgent key (an operator's abort, promote, pause, or a new spec) jumps the queue, so a busy
controller still answers an abort at once; and ``get(urgent_only=True)`` takes only urgent
keys, for a worker kept for them (the controller runs one beside ``--workers``), so that an
abort waits for neither a long queue nor for a worker to finish its reconcile.

Fairness: urgent keys are served first come, first served (a later urgent key never overtakes
an earlier one, so a stream of them cannot starve an abort), and an ordinary worker takes at
most ``URGENT_RUN`` urgent keys in a row while an ordinary key waits, then that ordinary key
(so a stream of urgent keys cannot starve the others either; the urgent worker keeps taking
urgent keys only).

Every operation is O(1) in the number of keys (two ordered dicts, urgent keys and the others:
membership, moving a key to the urgent ones and pop-front without a scan). ``on_wait``
receives each key's queue wait in seconds when a worker takes it: from the first ``add`` not
yet served (an add while the key is processed counts from then, so the wait includes that
processing) to ``get``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

# How many urgent keys an ordinary worker takes in a row while an ordinary key waits.
URGENT_RUN = 3


class WorkQueue:
    def __init__(
        self,
        *,
        base_delay: float = 0.05,
        max_delay: float = 30.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._cond = threading.Condition()
        # the keys in order, first first: urgent ones, then the others
        self._front: OrderedDict[str, None] = OrderedDict()
        self._back: OrderedDict[str, None] = OrderedDict()
        self._since: dict[str, float] = {}  # key -> monotonic time of its first pending add
        self._urgent: set[str] = set()  # keys made urgent while a worker processed them
        self._on_wait = on_wait
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._run = 0  # urgent keys taken in a row by ordinary workers while others waited
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: str, *, urgent: bool = False) -> None:
        """Queue ``key``; an ``urgent`` one (an operator's action) goes to the front."""
        with self._cond:
            if self._shutdown:
                return
            if urgent and key in self._processing:
                self._urgent.add(key)  # it goes first when its worker is done
            if key in self._dirty:
                if urgent and self._back.pop(key, False) is None:
                    self._put(key, urgent=True)  # queued as ordinary: now after urgent ones
                return
            self._dirty.add(key)
            self._since[key] = time.monotonic()
            if key not in self._processing:
                self._put(key, urgent)

    def _put(self, key: str, urgent: bool) -> None:
        """Queue ``key`` (caller holds the lock): an urgent one after the urgent ones queued
        before it and before every ordinary one."""
        if urgent:
            self._front[key] = None
        else:
            self._back[key] = None
        # Every waiter: a single notify could wake only the urgent worker, which does not take
        # an ordinary key, leaving it for a worker's next timeout.
        self._cond.notify_all()

    def get(self, timeout: float | None = None, *, urgent_only: bool = False) -> str | None:
        """The next key (now being processed), or None on shutdown or timeout; with
        ``urgent_only``, the next urgent key."""
        with self._cond:
            while not (self._front or (self._back and not urgent_only)) and not self._shutdown:
                if not self._cond.wait(timeout):
                    return None
            if self._shutdown:
                return None
            key, _ = self._next(urgent_only).popitem(last=False)
            self._dirty.discard(key)
            self._processing.add(key)
            since = self._since.pop(key, None)
            if self._on_wait is not None and since is not None:
                self._on_wait(time.monotonic() - since)
            return key

    def _next(self, urgent_only: bool) -> OrderedDict[str, None]:
        """The dict to take from (caller holds the lock; one of them holds a key)."""
        if urgent_only or not self._back:
            return self._front
        if not self._front or self._run >= URGENT_RUN:
            self._run = 0
            return self._back
        self._run += 1
        return self._front

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            urgent = key in self._urgent
            self._urgent.discard(key)
            if key in self._dirty:
                self._put(key, urgent)

    def backoff(self, key: str) -> float:
        """Record a failure of ``key``; the delay before its next attempt."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        return float(min(self.base_delay * (2**failures), self.max_delay))

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._front) + len(self._back)

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
