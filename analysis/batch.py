"""One grouped query per (Prometheus, shape, instant), answered to every Rollout that asks.

The controller measures each Rollout's gate when it falls due, from several workers at once.
For built-in checks it asks ``SharedAnswers.answer`` instead of querying: the first caller for a
key (``source`` — which Prometheus, with which credentials —, the check's ``Shape``, the aligned
evaluation instant) sends ``grouped_query`` through the MetricProvider seam and indexes the
answer once (``split_grouped``); callers arriving meanwhile wait for that answer, and callers
arriving later within the slot read it. An answer is only ever read for its own instant (the
key holds it), so nothing stale is served: a caller in the next slot has another key, and keys
are forgotten two slots after their instant.

A failure (unreachable, HTTP 5xx, garbage) is the answer to the callers waiting for that
query: each gets it as its own ``MetricError``, hence its own Error measurement, as its own
query sent at the same moment would have. It is not kept: a caller arriving after it asks
again (Prometheus may be back), as its own query would have — a blip is not handed to every
Rollout due in the rest of the slot.
No I/O of its own: only the provider's query, in the caller's thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import datetime, timedelta

from analysis.checks import Grouped, Shape, grouped_query, split_grouped
from analysis.provider import MetricProvider

Key = tuple[str, Shape, datetime]


class SharedAnswers:
    """Grouped answers shared by every Rollout asking for the same key; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[Key, tuple[datetime, Future[Grouped]]] = {}
        self.queries = 0  # grouped queries sent, for tests and benchmarks

    def answer(
        self, source: str, shape: Shape, at: datetime, slot: int, provider: MetricProvider
    ) -> Grouped:
        """The grouped answer for ``shape`` at instant ``at`` from ``source``'s ``provider``.

        ``slot`` (seconds) is how long ``at`` stays the aligned instant: the answer is kept
        until two slots after ``at``. Raises what ``provider.query`` raised, to every caller
        of the key.
        """
        key = (source, shape, at)
        with self._lock:
            self._forget_before(at)
            held = self._answers.get(key)
            if held is None:
                future: Future[Grouped] = Future()
                self._answers[key] = (at + timedelta(seconds=2 * slot), future)
                self.queries += 1
                owner = True
            else:
                future = held[1]
                owner = False
        if owner:
            try:
                future.set_result(split_grouped(provider.query(grouped_query(shape), at=at)))
            except BaseException as error:  # every waiter gets it; re-raised below
                with self._lock:  # not kept: a caller arriving later asks again
                    if self._answers.get(key, (None, None))[1] is future:
                        del self._answers[key]
                future.set_exception(error)
        return future.result()

    def _forget_before(self, now: datetime) -> None:
        """Drop answers whose slot ended over a slot ago (caller holds the lock)."""
        stale = [key for key, (until, _) in self._answers.items() if until < now]
        for key in stale:
            del self._answers[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)
