"""``rollout get --watch``'s loop (``rollout.ops.watch_tree``) over a fake ``ClusterAccess``.

The fake is our own seam: it serves a recorded Rollout and its ReplicaSets, and watch events a
test pushes. Output goes to a ``StringIO`` (not a terminal): frames are printed whole, one per
change of what they show, never for ages alone.
"""

from __future__ import annotations

import copy
import fcntl
import io
import json
import os
import queue
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollout.cluster.access import (
    EVENTS,
    PODS,
    REPLICA_SETS,
    ROLLOUTS,
    ClusterAccess,
    ClusterError,
    NotFound,
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    Unavailable,
    WatchEvent,
)
from rollout.ops import Target, watch_tree
from tests.integration.terminal import replay

RECORDED = json.loads((Path(__file__).parent / "data" / "get_scenes.json").read_text())
NAMESPACE = "demo"


class FakeCluster:
    """Lists what it holds; each watch waits for the events a test pushes for its resource.
    ``broken``: every list and watch fails as an unreachable API does."""

    def __init__(self) -> None:
        scene = copy.deepcopy(RECORDED["canary_mid_step"])
        self.objects: dict[str, Objs] = {
            ROLLOUTS.plural: [scene["rollout"]],
            REPLICA_SETS.plural: scene["replica_sets"],
            PODS.plural: [],
            EVENTS.plural: scene["events"],
        }
        self.streams: dict[str, queue.Queue[WatchEvent]] = {
            plural: queue.Queue() for plural in self.objects
        }
        self.broken = False
        self.closed = threading.Event()

    def push(self, res: Resource, type_: str, obj: Obj) -> None:
        self.streams[res.plural].put(WatchEvent(type_, obj))

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        for obj in self.list(res, namespace)[0]:
            if obj["metadata"]["name"] == name:
                return obj
        raise NotFound(f"{res.plural} {name} not found")

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        if self.broken:
            raise Unavailable("GET /apis: connection refused")
        return copy.deepcopy(self.objects[res.plural]), "1"

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        while not self.closed.is_set():
            if self.broken:
                raise Unavailable("GET /apis?watch=1: connection refused")
            try:
                yield self.streams[res.plural].get(timeout=0.05)
            except queue.Empty:
                continue

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        raise NotImplementedError

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        raise NotImplementedError

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        raise NotImplementedError

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        raise NotImplementedError

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        raise NotImplementedError

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        raise NotImplementedError


class Watching:
    """``watch_tree`` running on a thread, writing to a StringIO."""

    def __init__(self, cluster: FakeCluster, seconds: float | None, give_up: float = 60) -> None:
        self.out = io.StringIO()
        self.target = Target(_access(cluster), NAMESPACE, stdout=self.out)
        deadline = None if seconds is None else time.monotonic() + seconds
        self.result: int | BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(deadline, give_up), daemon=True)
        self.thread.start()

    def _run(self, deadline: float | None, give_up: float) -> None:
        try:
            self.result = watch_tree(
                self.target, "reviews", deadline, unicode=False, give_up=give_up
            )
        except BaseException as error:  # handed to the test
            self.result = error

    def frames(self) -> list[str]:
        return self.out.getvalue().rstrip("\n").split("\n---\n") if self.out.getvalue() else []

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while not check(frames := self.frames()):
            assert time.monotonic() < deadline, frames
            time.sleep(0.02)
        return frames

    def end(self, timeout: float = 10) -> int | BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return self.result


def _access(cluster: FakeCluster) -> ClusterAccess:
    return cluster


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    fake = FakeCluster()
    yield fake
    fake.closed.set()


def test_a_frame_per_change_and_none_for_ages_alone(cluster: FakeCluster) -> None:
    watching = Watching(cluster, seconds=3.0)
    (first,) = watching.wait_for(lambda frames: len(frames) == 1)
    assert "Status:          .. Progressing" in first
    paused = copy.deepcopy(cluster.objects[ROLLOUTS.plural][0])
    paused["status"]["phase"] = "Paused"
    paused["status"]["pauseConditions"] = [
        {"reason": "PausedByUser", "startTime": "2026-12-01T10:39:15Z"}
    ]
    paused["metadata"]["resourceVersion"] = "2"
    cluster.push(ROLLOUTS, "MODIFIED", paused)
    assert watching.end() == 0  # at the deadline
    frames = watching.frames()
    assert len(frames) == 2, frames  # 3 s of ticking ages printed nothing more
    assert "Status:          || Paused (PausedByUser)" in frames[1]
    assert frames[1].startswith("Name:            reviews")


def test_a_deleted_rollout_ends_the_watch(cluster: FakeCluster) -> None:
    watching = Watching(cluster, seconds=None)
    watching.wait_for(lambda frames: len(frames) == 1)
    cluster.push(ROLLOUTS, "DELETED", cluster.objects[ROLLOUTS.plural][0])
    result = watching.end()
    assert isinstance(result, ClusterError) and str(result) == 'rollout "reviews" was deleted'


def test_an_unreachable_api_is_said_on_the_screen_then_given_up(cluster: FakeCluster) -> None:
    watching = Watching(cluster, seconds=None, give_up=1.0)
    watching.wait_for(lambda frames: len(frames) == 1)
    cluster.broken = True  # the watches break, and every list from now on
    result = watching.end()
    assert isinstance(result, Unavailable), result
    assert str(result).startswith('lost the watch of rollout "reviews" for 1s: ')
    assert "connection refused" in str(result)
    frames = watching.frames()
    assert frames[-1].endswith("!! watch interrupted, retrying: GET /apis: connection refused")


class OnATerminal:
    """``watch_tree`` writing to the slave side of a pseudo-terminal of ``columns`` x ``lines``
    (its own window size, as a terminal emulator sets it); what it wrote is read from the
    master side (``raw``), as the terminal receives it."""

    def __init__(self, cluster: FakeCluster, columns: int, lines: int) -> None:
        master, slave = os.openpty()
        self.master, self.slave = master, slave
        self.resize(columns, lines)
        self.out = open(slave, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        self.raw = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.target = Target(_access(cluster), NAMESPACE, stdout=self.out)
        self.result: int | BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def resize(self, columns: int, lines: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self._lock:
                self.raw += chunk

    def _run(self) -> None:
        try:
            self.result = watch_tree(self.target, "reviews", time.monotonic() + 3.0)
        except BaseException as error:  # handed to the test
            self.result = error

    def received(self) -> bytes:
        with self._lock:
            return self.raw

    def wait_for(self, check: Callable[[bytes], bool], timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not check(raw := self.received()):
            assert time.monotonic() < deadline, raw.decode(errors="replace")
            time.sleep(0.02)
        return raw

    def close(self) -> None:
        self.thread.join(10)
        self.out.close()
        os.close(self.slave)
        self._reader.join(5)
        os.close(self.master)


def test_a_frame_taller_than_the_terminal_keeps_its_first_line_and_redraws_on_resize(
    cluster: FakeCluster,
) -> None:
    """The recorded Rollout is minutes old: its ages change once a minute at most, so only the
    resize can make the frame be drawn again (in the new window's size)."""
    terminal = OnATerminal(cluster, columns=140, lines=12)
    try:
        raw = terminal.wait_for(lambda raw: b"more line(s)" in raw)
        screen = replay(raw, 140, 12).splitlines()
        assert screen[0].startswith("Name:            reviews"), screen
        assert len(screen) == 12 and screen[-1].startswith("... "), screen
        drawn = len(terminal.received())
        terminal.resize(60, 8)
        resized = terminal.wait_for(lambda raw: len(raw) > drawn, timeout=2.5)[drawn:]
        screen = replay(resized, 60, 8).splitlines()
        assert screen[0].startswith("Name:            reviews"), screen
        assert len(screen) == 8 and screen[-1].startswith("... "), screen
        terminal.thread.join(10)
        assert terminal.result == 0
    finally:
        terminal.close()
