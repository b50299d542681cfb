"""The leader-election write fence, with a fake monotonic clock, at the ClusterAccess seam.

``MemoryAccess`` is a ClusterAccess over a dict (the seam is ours to fake): it keeps
resourceVersions, refuses a stale replace with ``Conflict`` as the API does, records every
write, and can be told to fail Lease requests or to take time answering them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from rollout.cluster.access import (
    LEASES,
    REPLICA_SETS,
    ROLLOUTS,
    Conflict,
    NotFound,
    NotLeader,
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    Unavailable,
    WatchEvent,
)
from rollout.cluster.fence import FencedAccess, WriteFence
from rollout.cluster.kube import KubeAccess
from rollout.controller.execute import Executor
from rollout.controller.leader import LeaderElector, check_durations
from rollout.domain.plan import EmitEvent

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
Writes = list[tuple[str, str, str]]  # (verb, plural, name)


class FakeClock:
    """Monotonic seconds, moved by the test; ``wall`` follows it from T0."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryAccess:
    def __init__(self, clock: FakeClock, share: MemoryAccess | None = None) -> None:
        """``share``: another MemoryAccess whose objects and writes this one sees (a second
        replica's connection to the same API, which can fail on its own)."""
        self.clock = clock
        self.objects: dict[tuple[str, str | None, str], Obj] = share.objects if share else {}
        self.versions: list[int] = share.versions if share else [0]
        self.writes: Writes = share.writes if share else []
        self.fail_leases = False
        self.lease_latency = 0.0  # seconds a Lease request takes (the clock moves)

    def _lease_call(self, res: Resource) -> None:
        if res.plural != LEASES.plural:
            return
        self.clock.advance(self.lease_latency)
        if self.fail_leases:
            raise Unavailable("leases: 503", code=503)

    def _store(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        self.versions[0] += 1
        version = str(self.versions[0])
        obj = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": version}}
        self.objects[(res.plural, namespace, name)] = obj
        return obj

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        self._lease_call(res)
        try:
            return dict(self.objects[(res.plural, namespace, name)])
        except KeyError:
            raise NotFound(f"{res.plural}/{name}") from None

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        items = [o for (p, ns, _), o in self.objects.items() if p == res.plural and ns == namespace]
        return items, str(self.versions[0])

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self._lease_call(res)
        name = body["metadata"]["name"]
        if (res.plural, namespace, name) in self.objects:
            raise Conflict(f"{res.plural}/{name} exists")
        self.writes.append(("create", res.plural, name))
        return self._store(res, namespace, name, body)

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        self._lease_call(res)
        current = self.objects.get((res.plural, namespace, name))
        if current is None:
            raise NotFound(f"{res.plural}/{name}")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(f"{res.plural}/{name}: stale resourceVersion")
        self.writes.append(("replace", res.plural, name))
        return self._store(res, namespace, name, body)

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        self.writes.append(("patch", res.plural, name))
        return {}

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        self.writes.append(("patch_status", res.plural, name))
        return {}

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self.writes.append(("delete", res.plural, name))

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        return iter(())

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        self.writes.append(("event", "events", reason))

    def others(self) -> Writes:
        """The writes that are not the Lease's."""
        return [w for w in self.writes if w[1] != LEASES.plural]


def every_write(access: FencedAccess) -> None:
    """One of each kind of write through ``access``; asserts each is refused."""
    rollout: Obj = {"metadata": {"name": "r", "namespace": "ns"}}
    attempts: list[Callable[[], object]] = [
        lambda: access.create(REPLICA_SETS, "ns", {"metadata": {"name": "rs"}}),
        lambda: access.replace(REPLICA_SETS, "ns", "rs", {"metadata": {"name": "rs"}}),
        lambda: access.patch(REPLICA_SETS, "ns", "rs", {"spec": {"replicas": 1}}),
        lambda: access.patch_status(ROLLOUTS, "ns", "r", {"status": {}}),
        lambda: access.delete(REPLICA_SETS, "ns", "rs"),
        lambda: access.event(rollout, "Normal", "Reason", "message", "test"),
    ]
    for attempt in attempts:
        with pytest.raises(NotLeader):
            attempt()


def test_a_fence_that_never_opened_refuses_every_write_and_sends_nothing() -> None:
    clock = FakeClock()
    inner = MemoryAccess(clock)
    inner._store(ROLLOUTS, "ns", "r", {"metadata": {"name": "r"}})
    fence = WriteFence(10.0, clock)
    access = FencedAccess(inner, fence)
    every_write(access)
    assert inner.writes == []
    assert fence.refused == 6
    # Reads are not fenced: a standby keeps its caches warm.
    assert access.get(ROLLOUTS, "ns", "r")["metadata"]["name"] == "r"
    assert len(access.list(ROLLOUTS, "ns")[0]) == 1


def test_writes_pass_until_the_renew_deadline_and_not_at_it() -> None:
    clock = FakeClock()
    inner = MemoryAccess(clock)
    fence = WriteFence(10.0, clock)
    access = FencedAccess(inner, fence)
    fence.renewed(clock.now)
    clock.advance(9.999)
    access.patch(REPLICA_SETS, "ns", "rs", {"spec": {"replicas": 1}})
    access.event({"metadata": {"name": "r"}}, "Normal", "Step", "m", "test")
    assert len(inner.writes) == 2
    clock.advance(0.001)  # now == renewed + renew deadline: refused
    every_write(access)
    assert len(inner.writes) == 2
    # A later renewal opens it again; an older one (out of order) never moves it back.
    fence.renewed(clock.now)
    fence.renewed(clock.now - 30)
    assert fence.open_until() == clock.now + 10.0
    access.delete(REPLICA_SETS, "ns", "rs")
    fence.close()
    every_write(access)
    assert len(inner.writes) == 3


def elector(access: MemoryAccess, clock: FakeClock, identity: str) -> LeaderElector:
    return LeaderElector(
        access,
        "ns",
        identity=identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock.wall,
        monotonic=clock,
    )


@pytest.mark.parametrize("hung", [False, True], ids=["renewals-fail", "renewal-hangs"])
def test_a_leader_cut_off_from_the_lease_stops_writing_before_anyone_else_can_lead(
    hung: bool,
) -> None:
    """Two replicas on one fake clock, stepping every retry period as ``run`` does; A's Lease
    requests fail from t=0 (or A's elector hangs in a request and never steps again: then
    the clock alone closes the fence). A's writes stop at its renew deadline, B leads only
    after the lease duration, and at no moment may both write."""
    clock = FakeClock()
    store = MemoryAccess(clock)
    cut_off = MemoryAccess(clock, share=store)  # A's own path to the same API: it will fail
    a, b = elector(cut_off, clock, "a"), elector(store, clock, "b")
    a_writes = FencedAccess(store, a.fence)
    assert a.step() is True
    a.leading.set()
    assert b.step() is False
    start = clock.now
    cut_off.fail_leases = True
    a_stopped = b_leads = None
    while b_leads is None:
        clock.advance(0.5)  # both try every 2 s, out of phase; writes are tried every 0.5 s
        a_turn = (clock.now - start) % 2 == 0 and a_stopped is None and not hung
        if a_turn and a.step() is None:
            a_stopped = clock.now - start
        if (clock.now - start) % 2 == 1 and b.step():
            b_leads = clock.now - start
        try:
            a_writes.patch(REPLICA_SETS, "ns", "rs", {})
            a_wrote = True
        except NotLeader:
            a_wrote = False
        assert not (a_wrote and b_leads is not None), "two leaders wrote at the same time"
    if hung:
        assert a_stopped is None and a.fence.open_until() == start + 10
    else:
        assert a_stopped == 10.0  # the first try at or after its renew deadline gives up
        assert a.fence.open_until() is None and not a.leading.is_set()
    assert b_leads >= 15.0  # B waited the lease duration from when it last saw a renewal
    assert (
        store.objects[(LEASES.plural, "ns", "rollout-controller")]["spec"]["holderIdentity"] == "b"
    )
    # A's last write went through before its deadline; none at or after it.
    assert len(store.others()) == 19  # t = 0.5 .. 9.5


def test_the_lease_is_timed_from_when_the_renewal_was_sent_not_when_it_returned() -> None:
    clock = FakeClock()
    access = MemoryAccess(clock)
    leader = elector(access, clock, "a")
    assert leader.step() is True
    access.lease_latency = 4.0  # a slow renewal: GET and PUT take 4 s each
    sent = clock.now
    assert leader.step() is True
    assert clock.now == sent + 8.0
    assert leader.fence.open_until() == sent + 10.0  # not clock.now + 10


def test_a_candidate_times_the_lease_from_when_it_saw_it_not_from_its_renew_time() -> None:
    """The holder's renewTime is an hour old by the candidate's wall clock (clock skew): the
    candidate still waits a full lease duration after first seeing that record."""
    clock = FakeClock()
    access = MemoryAccess(clock)
    access._store(
        LEASES,
        "ns",
        "rollout-controller",
        {
            "metadata": {"name": "rollout-controller", "namespace": "ns"},
            "spec": {
                "holderIdentity": "other",
                "leaseDurationSeconds": 15,
                "renewTime": "2026-11-27T09:00:00.000000Z",
            },
        },
    )
    candidate = elector(access, clock, "b")
    for _ in range(7):  # 0 .. 12 s
        assert candidate.step() is False
        clock.advance(2)
    assert candidate.step() is False  # 14 s
    clock.advance(1)
    assert candidate.step() is True  # 15 s after it first saw the record
    assert candidate.fence.open_until() == clock.now + 10


def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    clock = FakeClock()
    access = MemoryAccess(clock)
    leader = elector(access, clock, "a")
    assert leader.step() is True
    leader.leading.set()
    key = (LEASES.plural, "ns", "rollout-controller")
    lease = access.objects[key]
    access._store(
        LEASES,
        "ns",
        "rollout-controller",
        {**lease, "spec": {**lease["spec"], "holderIdentity": "b"}},
    )
    clock.advance(2)
    assert leader.step() is None
    assert leader.fence.open_until() is None
    with pytest.raises(NotLeader):
        FencedAccess(access, leader.fence).patch(REPLICA_SETS, "ns", "rs", {})


def test_release_closes_the_fence_before_freeing_the_lease() -> None:
    clock = FakeClock()
    access = MemoryAccess(clock)
    leader = elector(access, clock, "a")
    assert leader.step() is True
    leader.leading.set()
    leader.release()
    assert leader.fence.open_until() is None
    lease = access.objects[(LEASES.plural, "ns", "rollout-controller")]
    assert lease["spec"]["holderIdentity"] == ""


def test_an_event_the_fence_refuses_stops_the_reconcile() -> None:
    """Other refused Events are best effort (logged, dropped); a NotLeader is not an API
    answer and must end the reconcile rather than be counted as a lost Event."""
    clock = FakeClock()
    inner = MemoryAccess(clock)
    executor = Executor(FencedAccess(inner, WriteFence(10.0, clock)), router=None)  # type: ignore[arg-type]
    with pytest.raises(NotLeader):
        executor.emit({"metadata": {"name": "r"}}, [EmitEvent("Normal", "Step", "m")])
    assert inner.writes == []


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "message"),
    [
        (15, 15, 2, "--lease-duration (15s) must be greater than --renew-deadline (15s)"),
        (10, 15, 2, "--lease-duration (10s) must be greater than --renew-deadline (15s)"),
        (15, 2, 2, "--renew-deadline (2s) must be greater than --retry-period (2s)"),
        (15, 10, 0, "--retry-period must be > 0s"),
        (15, 10, -1, "--retry-period must be > 0s"),
        # Non-finite or oversized values passed the ordering checks and then killed the
        # elector thread (OverflowError writing leaseDurationSeconds): a replica that never
        # led, forever, behind a healthy /healthz.
        (float("inf"), 10, 2, "--lease-duration must be a finite number of seconds, got inf"),
        (15, 10, float("nan"), "--retry-period must be a finite number of seconds, got nan"),
        (1e12, 10, 2, "--lease-duration must be at most 2147483647s"),
    ],
)
def test_durations_must_be_lease_over_renew_over_retry(
    lease: float, renew: float, retry: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_durations(lease, renew, retry)
    check_durations(15, 10, 2)
    check_durations(3, 2, 0.5)


# -- KubeAccess checks the fence before every retry of a write (HTTP faked by a local server) --


@pytest.fixture
def unavailable_api() -> Iterator[tuple[str, list[str]]]:
    """An API that answers 503 to everything; the requests it got."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.append(f"{self.command} {self.path}")
            body = b'{"kind":"Status","code":503}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_write_retried_past_the_deadline_is_not_sent_again(
    unavailable_api: tuple[str, list[str]],
) -> None:
    url, seen = unavailable_api
    clock = FakeClock()
    fence = WriteFence(10.0, clock)
    fence.renewed(clock.now)

    def check(what: str) -> None:
        fence.check(what)
        clock.advance(4.0)  # each attempt "takes" 4 s: the third one would be past 10 s

    access = KubeAccess(
        client.ApiClient(client.Configuration(host=url)),
        attempts=5,
        max_backoff=0.01,
        before_write=check,
    )
    with pytest.raises(NotLeader):
        access.patch(REPLICA_SETS, "ns", "rs", {"spec": {"replicas": 1}})
    assert len(seen) == 3  # attempts at 0 s, 4 s, 8 s sent; the one at 12 s refused
    assert all(s.startswith("PATCH") for s in seen)
    # Reads are never fenced: a GET is retried to its budget whatever the fence says.
    fence.close()
    seen.clear()
    with pytest.raises(Unavailable):
        access.get(REPLICA_SETS, "ns", "rs")
    assert len(seen) == 5
