"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go does it.

The holder renews the lease every ``renew_every`` seconds; a candidate takes it over once
``renewTime + leaseDurationSeconds`` has passed without a renewal. Every write is a replace with
the resourceVersion that was read, so two candidates can never both win. A leader that cannot
renew within the lease duration stops leading (the caller stops its workers); on shutdown the
lease is released so that a standby takes over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.cluster.access import LEASES, ClusterAccess, ClusterError, Conflict, NotFound, Obj
from rollout.controller.observe import parse_time

log = logging.getLogger(__name__)


def micro_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        access: ClusterAccess,
        namespace: str,
        name: str = "rollout-controller",
        *,
        identity: str | None = None,
        lease_seconds: int = 15,
        renew_every: float = 10.0,
        retry_every: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.name = name
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.clock = clock
        self.leading = threading.Event()

    def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        try:
            lease = self.access.get(LEASES, self.namespace, self.name)
        except NotFound:
            return self._create(now)
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        renewed = parse_time(spec.get("renewTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        held_by_other = holder not in ("", self.identity)
        if held_by_other and renewed is not None and now < renewed + timedelta(seconds=duration):
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

    def run(
        self, on_started: Callable[[], None], on_stopped: Callable[[], None], stop: threading.Event
    ) -> None:
        """Campaign until ``stop``; call ``on_started`` on winning, ``on_stopped`` on losing."""
        last_renewal: datetime | None = None
        while not stop.is_set():
            try:
                won = self.try_acquire_or_renew()
            except ClusterError as error:
                log.warning("leader election: %s", error)
                won = False
            now = self.clock()
            if won:
                last_renewal = now
                if not self.leading.is_set():
                    log.info("became leader as %s", self.identity)
                    self.leading.set()
                    on_started()
            elif self.leading.is_set():
                expired = last_renewal is None or now >= last_renewal + timedelta(
                    seconds=self.lease_seconds
                )
                if expired:
                    log.error("lost leadership as %s", self.identity)
                    self.leading.clear()
                    on_stopped()
                    return
            stop.wait(self.renew_every if self.leading.is_set() else self.retry_every)

    def release(self) -> None:
        """Give the lease up at shutdown so that a standby takes over without waiting."""
        if not self.leading.is_set():
            return
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
        self.leading.clear()
