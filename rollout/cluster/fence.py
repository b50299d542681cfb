"""The leader-election write fence: no write leaves a replica that may no longer lead.

client-go's rule (``leaderelection``: LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod
2 s): a leader that has not renewed its Lease within the renew deadline stops acting, and a
candidate takes the Lease over only once it has seen the same Lease record unchanged for the
lease duration. Because renew deadline < lease duration, the old leader stops before the new
one starts. Here the rule is enforced at the ClusterAccess seam rather than by asking workers
to stop: ``WriteFence.check`` runs right before every write is sent (``FencedAccess`` wraps
any ClusterAccess; ``KubeAccess`` also calls it before each retry of a write), and refuses
with ``NotLeader`` once

    now >= sent_at(last successful renewal) + renew_deadline        (monotonic clock)

or when the replica has not (yet) won the Lease. ``sent_at`` is when the renewal request was
sent, not when its answer came back, so a slow renewal cannot extend the lease (client-go
measures from before the request too). The margin between the two deadlines (5 s by default)
is what covers a write already in flight when the fence closes.

The Lease itself is written through an unfenced ClusterAccess: only the elector does that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from rollout.cluster.access import (
    ClusterAccess,
    NotLeader,
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    WatchEvent,
)

log = logging.getLogger(__name__)


class WriteFence:
    """Whether this replica may write now; closed until the first successful renewal.

    ``renew_deadline``: seconds after a successful renewal was *sent* during which writes are
    allowed. ``clock``: a monotonic clock in seconds (``time.monotonic``; a fake in tests).
    Thread-safe: the elector opens and closes it, workers check it.
    """

    def __init__(self, renew_deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        if renew_deadline <= 0:
            raise ValueError(f"renew_deadline must be > 0, got {renew_deadline}")
        self.renew_deadline = renew_deadline
        self.clock = clock
        self._renewed_at: float | None = None
        self._lock = threading.Lock()
        self._refused = 0

    def renewed(self, sent_at: float) -> None:
        """A renewal (or acquisition) sent at ``sent_at`` (``clock`` time) succeeded."""
        with self._lock:
            if self._renewed_at is None or sent_at > self._renewed_at:
                self._renewed_at = sent_at

    def close(self) -> None:
        """Stop all writes now (leadership lost or released)."""
        with self._lock:
            self._renewed_at = None

    def open_until(self) -> float | None:
        """The ``clock`` time at which writes stop, or None when they are stopped already."""
        with self._lock:
            if self._renewed_at is None:
                return None
            return self._renewed_at + self.renew_deadline

    def check(self, what: str = "write") -> None:
        """Return if a write may be sent now; raise ``NotLeader`` otherwise."""
        now = self.clock()
        with self._lock:
            renewed = self._renewed_at
            allowed = renewed is not None and now < renewed + self.renew_deadline
            if allowed:
                return
            self._refused += 1
            first = self._refused == 1
        if renewed is None:
            reason = "this replica does not hold the Lease"
        else:
            reason = (
                f"the Lease was last renewed {now - renewed:.1f}s ago "
                f"(renew deadline {self.renew_deadline:g}s)"
            )
        if first:
            log.warning("refusing writes: %s", reason)
        raise NotLeader(f"{what} refused: {reason}", code=0, reason="NotLeader")

    @property
    def refused(self) -> int:
        """How many writes were refused so far."""
        with self._lock:
            return self._refused


class FencedAccess:
    """A ClusterAccess whose writes (create, replace, patch, patch_status, delete, event) pass
    ``fence.check`` right before being sent; reads and watches pass through unchanged.

    Raises ``NotLeader`` (a ``ClusterError``) instead of writing when the fence is closed.
    """

    def __init__(self, inner: ClusterAccess, fence: WriteFence) -> None:
        self.inner = inner
        self.fence = fence

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return self.inner.get(res, namespace, name)

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        return self.inner.list(res, namespace, label_selector)

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        return self.inner.watch(
            res,
            namespace,
            resource_version,
            timeout_seconds=timeout_seconds,
            label_selector=label_selector,
        )

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self.fence.check(f"create {res.plural}")
        return self.inner.create(res, namespace, body)

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        self.fence.check(f"replace {res.plural}/{name}")
        return self.inner.replace(res, namespace, name, body)

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        self.fence.check(f"patch {res.plural}/{name}")
        return self.inner.patch(res, namespace, name, patch, patch_type=patch_type)

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        self.fence.check(f"patch {res.plural}/{name}/status")
        return self.inner.patch_status(res, namespace, name, patch)

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self.fence.check(f"delete {res.plural}/{name}")
        self.inner.delete(res, namespace, name)

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        self.fence.check(f"event {reason}")
        self.inner.event(involved, type_, reason, message, component)
