"""Leader election with a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Three durations (client-go's defaults, which are ours): ``lease_duration`` 15 s,
``renew_deadline`` 10 s, ``retry_period`` 2 s, with lease > renew > retry.

- Leader and candidates alike try every ``retry_period``: the leader to renew, a candidate to
  acquire.
- A candidate takes the Lease over only once it has seen the same Lease record (holder and
  renewTime) unchanged for ``leaseDurationSeconds`` by its own monotonic clock, counted from
  when the record's first answer came back — it never compares another host's timestamp with
  its own clock, so clock skew cannot shorten a lease.
- The leader times its lease from when the renewal request was *sent* (monotonic clock), and
  hands each successful renewal to the ``WriteFence``, which refuses every other write from
  ``sent + renew_deadline`` on. It stops leading (``on_stopped``) when it has not renewed
  within the renew deadline, or at once when the Lease shows another holder. Since the
  candidate's clock starts no earlier than the leader's renewal was sent, the leader's writes
  stop at least ``lease_duration - renew_deadline`` seconds before anyone else can lead.

Every write is a replace with the resourceVersion that was read, so two candidates can never
both win. On shutdown the lease is released so that a standby takes over at once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rollout.cluster.access import LEASES, ClusterAccess, ClusterError, Conflict, NotFound, Obj
from rollout.cluster.fence import WriteFence

log = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
MAX_LEASE_SECONDS = 2**31 - 1  # Lease.spec.leaseDurationSeconds is an int32
LEASE_NAME = "rollout-controller"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def default_identity() -> str:
    """This process's name in the Lease and on its Events: ``host_pid_random``."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def lease_name_for(shard_selector: str | None) -> str:
    """The default Lease name: ``rollout-controller`` unsharded, else ``rollout-controller-``
    and 10 hex digits of the SHA-256 of the selector's canonical form (``selector.parse``), so
    that the replicas of one shard share a Lease and two shards never do."""
    if not shard_selector:
        return LEASE_NAME
    digest = hashlib.sha256(shard_selector.encode()).hexdigest()[:10]
    return f"{LEASE_NAME}-{digest}"


def check_lease_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can name a Lease (a DNS subdomain, at most 253)."""
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise ValueError(
            f"--lease-name {name!r} must be a DNS subdomain: lowercase alphanumerics, '-' and "
            "'.', starting and ending with an alphanumeric, at most 253 characters"
        )


def micro_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_durations(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """Raise ``ValueError`` (naming the flags) unless lease > renew > retry > 0 (seconds), as
    client-go requires: the gap lease - renew is the time by which the old leader's writes
    stop before a new leader can start. Each must be finite, and the lease duration fit the
    Lease's ``leaseDurationSeconds`` (an int32)."""
    for flag, value in (
        ("--lease-duration", lease_duration),
        ("--renew-deadline", renew_deadline),
        ("--retry-period", retry_period),
    ):
        if not math.isfinite(value):
            raise ValueError(f"{flag} must be a finite number of seconds, got {value:g}")
    if lease_duration > MAX_LEASE_SECONDS:
        raise ValueError(
            f"--lease-duration must be at most {MAX_LEASE_SECONDS}s "
            f"(the Lease's leaseDurationSeconds), got {lease_duration:g}s"
        )
    if not retry_period > 0:
        raise ValueError(f"--retry-period must be > 0s, got {retry_period:g}s")
    if not renew_deadline > retry_period:
        raise ValueError(
            f"--renew-deadline ({renew_deadline:g}s) must be greater than "
            f"--retry-period ({retry_period:g}s)"
        )
    if not lease_duration > renew_deadline:
        raise ValueError(
            f"--lease-duration ({lease_duration:g}s) must be greater than "
            f"--renew-deadline ({renew_deadline:g}s)"
        )


class LeaderElector:
    """Campaign for the Lease ``namespace/name`` through ``access`` (which must not be fenced:
    the Lease is the one write a non-leader makes). ``fence`` is opened by each successful
    renewal and closed when leadership ends. Durations are in seconds; ``clock`` gives the
    wall time written into the Lease, ``monotonic`` measures every duration."""

    def __init__(
        self,
        access: ClusterAccess,
        namespace: str,
        name: str = LEASE_NAME,
        *,
        identity: str | None = None,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        fence: WriteFence | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_durations(lease_duration, renew_deadline, retry_period)
        self.access = access
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.fence = fence or WriteFence(renew_deadline, monotonic)
        self.clock = clock
        self.monotonic = monotonic
        self.leading = threading.Event()
        # The last Lease record seen (holder, renewTime, ...) and when (monotonic) it was
        # first seen with that content.
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # when the last successful renewal was sent
        self._taken = False  # the Lease shows another holder while we lead

    @property
    def lease_seconds(self) -> int:
        """The lease duration as written into the Lease (whole seconds, rounded up)."""
        return max(1, math.ceil(self.lease_duration))

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease after it."""
        now = self.clock()
        try:
            lease = self.access.get(LEASES, self.namespace, self.name)
        except NotFound:
            return self._create(now)
        # When the record was seen: after the answer came back, so no earlier than the other
        # holder's renewal was sent (a candidate errs on waiting longer, never shorter).
        seen = self.monotonic()
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        record = (
            holder,
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = seen
        held_by_other = holder not in ("", self.identity)
        if held_by_other and self.leading.is_set():
            log.error("the Lease is held by %s", holder)
            self._taken = True
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if held_by_other and seen < self._observed_at + duration:
            return False
        if holder != self.identity:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.lease_seconds,
            renewTime=micro_time(now),
        )
        return self._replace(lease, spec)

    def _create(self, now: datetime) -> bool:
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            self.access.create(LEASES, self.namespace, body)
            return True
        except Conflict:
            return False

    def _replace(self, lease: Obj, spec: dict[str, Any]) -> bool:
        try:
            self.access.replace(LEASES, self.namespace, self.name, {**lease, "spec": spec})
            return True
        except Conflict:
            return False

    def step(self) -> bool | None:
        """One round of the campaign: try once, open the fence on success.

        Returns True when this replica leads after the round, False when it does not, and
        None when it has just lost leadership (fence closed; the caller stops)."""
        sent = self.monotonic()
        try:
            won = self.try_acquire_or_renew()
        except ClusterError as error:
            log.warning("leader election: %s", error)
            won = False
        if won:
            self._renewed_at = sent
            self.fence.renewed(sent)
            return True
        if not self.leading.is_set():
            return False
        expired = self._renewed_at is None or self.monotonic() >= (
            self._renewed_at + self.renew_deadline
        )
        if self._taken or expired:
            self.fence.close()
            self.leading.clear()
            log.error(
                "lost leadership as %s (%s)",
                self.identity,
                "another replica holds the Lease"
                if self._taken
                else f"not renewed within the renew deadline of {self.renew_deadline:g}s",
            )
            return None
        return True

    def run(
        self, on_started: Callable[[], None], on_stopped: Callable[[], None], stop: threading.Event
    ) -> None:
        """Campaign until ``stop``; call ``on_started`` on winning, ``on_stopped`` on losing
        (then return: a replica that lost does not campaign again, it exits and restarts
        clean, as client-go's default)."""
        while not stop.is_set():
            leads = self.step()
            if leads is None:
                on_stopped()
                return
            if leads and not self.leading.is_set():
                log.info("became leader as %s", self.identity)
                self.leading.set()
                on_started()
            stop.wait(self.retry_period)

    def release(self) -> None:
        """Give the lease up at shutdown so that a standby takes over without waiting.

        The fence closes first: nothing this replica still has in flight may write once the
        Lease is free."""
        self.fence.close()
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = self.access.get(LEASES, self.namespace, self.name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") == self.identity:
                spec.update(
                    holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(self.clock())
                )
                self._replace(lease, spec)
        except ClusterError as error:
            log.warning("could not release the lease: %s", error)
