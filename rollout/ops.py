"""The operator commands behind ``rollout get|list|status|promote|abort|retry|pause|resume|undo|
restart|set image``: reads, watches and patches of Rollouts over ``ClusterAccess``.

Operator actions are merge patches of the status subresource (API.md, "Operator actions"),
sent with the Rollout's ``resourceVersion`` as a precondition and re-read on Conflict, so a
concurrent controller write is never overwritten. ``undo``, ``restart`` and ``set image`` change
``spec.template`` instead, and say so. Every command returns its exit status; errors from the
API are ``ClusterError`` for the CLI to print as one line.

Nothing here imports ``kubernetes``: ``connect`` reaches it through ``rollout.cluster.kube``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, cast

from rollout.api.status import PAUSE_USER
from rollout.cluster.access import (
    EVENTS,
    NAMESPACES,
    PODS,
    REPLICA_SETS,
    ROLLOUTS,
    ClusterAccess,
    ClusterError,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    Obj,
    Resource,
    Unavailable,
    WatchEvent,
)
from rollout.domain.revision import (
    HASH_LABEL,
    TEMPLATE_ANNOTATION,
    Numbered,
    parse_revision_number,
    recorded_template,
    revision_numbers,
)
from rollout.domain.steps import step_number
from rollout.view import UNICODE_GLYPHS, Scene
from rollout.view import render as render_scene

RESTARTED_AT = "rollout.dev/restartedAt"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
CONFLICT_RETRIES = 5

# `rollout status` exit codes (the CLI's table: rollout.cli, docs/cli.md)
EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_TIMEOUT = 2

# Re-establishing a broken watch (``follow``): seconds of failing reconnections before giving
# up, and the backoff between attempts (exponential, with up to 20% jitter).
RECONNECT_FOR = 60.0
RECONNECT_FIRST_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0
# Seconds one watch request of ``follow`` lasts before the server ends it and it is resumed.
# The client gives up reading a silent stream 30 s after that (``KubeAccess.watch``), so this
# also bounds how long an API server that stopped answering (frozen, a half-open connection
# after a network partition) goes unnoticed: 90 s, where 300 s made it 5.5 minutes per try.
WATCH_WINDOW = 60

LIST_OUTPUTS = ("json", "yaml", "wide")

SPEC_WARNING = (
    "note: this changes spec.template of rollout/{name} in the cluster; a GitOps tool "
    "(Argo CD, Flux) will revert it unless the same change is made in Git"
)


class BadInput(ClusterError):
    """A command's input that does not fit the object it names (``set image`` of a container
    the Rollout does not have): nothing was changed; the CLI exits 4."""


@dataclass
class Target:
    """Where a command acts: the cluster and the namespace (kubectl's rules, see ``connect``)."""

    access: ClusterAccess
    namespace: str
    stdout: TextIO | None = None  # None: sys.stdout at the time of writing
    stderr: TextIO | None = None

    @property
    def out(self) -> TextIO:
        return self.stdout or sys.stdout

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr or sys.stderr, flush=True)


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    from rollout.cluster.kube import connect_cli

    access, ns = connect_cli(kubeconfig, context, namespace)
    return Target(access, ns)


# -- reading -----------------------------------------------------------------------------------


def get_rollout(target: Target, name: str) -> Obj:
    """The Rollout, or a ClusterError that says which of it or its namespace is missing."""
    try:
        return target.access.get(ROLLOUTS, target.namespace, name)
    except NotFound:
        missing_namespace = False
        try:
            target.access.get(NAMESPACES, None, target.namespace)
        except NotFound:
            missing_namespace = True
        except ClusterError:
            pass  # e.g. no permission to read namespaces: say what we know
        if missing_namespace:
            raise ClusterError(f'namespace "{target.namespace}" not found') from None
        raise ClusterError(
            f'rollout "{name}" not found in namespace "{target.namespace}"'
        ) from None


def follow(
    target: Target,
    name: str,
    deadline: float | None,
    *,
    reconnect_for: float = RECONNECT_FOR,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Obj]:
    """The Rollout now, then each new version of it as watch events bring them, until the
        deadline (``clock()``) or its deletion (``ClusterError``). Not polling: the watch
        is resumed from the last version seen when the server ends the stream, and the Rollout
        re-read (its current version yielded) when the version is too old (410 Gone).

        A broken watch (connection refused or dropped, DNS, TLS, timeout, 5xx: ``Unavailable``) is
        re-established with exponential backoff (``RECONNECT_FIRST_DELAY`` doubling up to
        ``RECONNECT_MAX_DELAY`` seconds, jittered), saying so once on stderr; after
        ``reconnect_for`` seconds of failed attempts in a row (or at the deadline) it raises the
        last ``Unavailable``, which the CLI turns into exit 3. Each watch request lasts at most
        ``WATCH_WINDOW`` seconds, so a server that stops answering without closing the
        connection is noticed within ``WATCH_WINDOW`` + 30 s. ``sleep`` and ``clock`` (the
    deadline's) are for tests."""
    obj = get_rollout(target, name)
    yield obj
    rv = str(obj["metadata"].get("resourceVersion", ""))
    failing_since: float | None = None  # monotonic time of the first failure in a row
    delay = RECONNECT_FIRST_DELAY
    relist = False
    while True:
        remaining = None if deadline is None else deadline - clock()
        if remaining is not None and remaining <= 0:
            return
        window = WATCH_WINDOW if remaining is None else min(remaining, WATCH_WINDOW)
        timeout = max(1, math.ceil(window))
        try:
            if relist:
                obj = get_rollout(target, name)
                rv = str(obj["metadata"].get("resourceVersion", ""))
                relist = False
                yield obj
            for event in target.access.watch(
                ROLLOUTS, target.namespace, rv, timeout_seconds=timeout
            ):
                failing_since, delay = None, RECONNECT_FIRST_DELAY
                if event.resource_version:
                    rv = event.resource_version
                if event.type == "BOOKMARK" or event.object.get("metadata", {}).get("name") != name:
                    continue
                if event.type == "DELETED":
                    raise ClusterError(f'rollout "{name}" was deleted')
                yield event.object
                if deadline is not None and clock() >= deadline:
                    return
            failing_since, delay = None, RECONNECT_FIRST_DELAY
        except Gone:
            relist = True
        except Unavailable as error:
            now = clock()
            if failing_since is None:
                failing_since = now
                target.warn(
                    f'warning: lost the watch of rollout "{name}" '
                    f"({' '.join(str(error).split())}); reconnecting"
                )
            pause = delay * (1 + 0.2 * random.random())
            give_up = failing_since + reconnect_for
            if deadline is not None:
                give_up = min(give_up, deadline)
            if now + pause > give_up:
                raise Unavailable(
                    f"{' '.join(str(error).split())} (gave up re-establishing the watch of "
                    f'rollout "{name}" after {now - failing_since:.0f}s)'
                ) from error
            sleep(pause)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)


def _status(obj: Obj) -> Obj:
    status: Obj = obj.get("status") or {}
    return status


def strategy_of(obj: Obj) -> str:
    st = _status(obj).get("strategy")
    if st:
        return str(st)
    strategy = (obj.get("spec") or {}).get("strategy") or {}
    return next(iter(strategy), "-")


def step_of(obj: Obj) -> str:
    """The step a Rollout is at, as ``"i/n"`` (``rollout.domain.steps.step_number``: 1-based,
    of the step being executed, ``n/n`` once all are done, ``-`` without steps): the same text
    as the status message, the Events and the CRD's Step column (``status.step``)."""
    st = _status(obj)
    if isinstance(st.get("step"), str):
        return str(st["step"])
    index, count = st.get("currentStepIndex"), st.get("stepCount")
    if not isinstance(index, int):
        return "-"
    if not isinstance(count, int):  # a status without stepCount: count the spec's steps
        count = _step_count_of_spec(obj)
    return step_number(index, count)


def _step_count_of_spec(obj: Obj) -> int:
    """How many steps the controller runs for ``obj``'s spec (``steps_of``: blue-green and
    mirror have steps of their own too); 0 when the spec does not parse."""
    from rollout.api.rollout import RolloutSpec
    from rollout.domain.steps import steps_of

    try:
        return len(steps_of(RolloutSpec.model_validate(obj.get("spec") or {})))
    except (ValueError, AssertionError):  # pydantic's ValidationError is a ValueError
        return 0


def weights_of(obj: Obj) -> Obj:
    weights: Obj = _status(obj).get("weights") or {}
    return weights


def age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "-"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def owned_replica_sets(target: Target, name: str) -> list[Obj]:
    """The Rollout's ReplicaSets, newest first (by creationTimestamp, then resourceVersion)."""
    items, _ = target.access.list(REPLICA_SETS, target.namespace)
    owned = [
        rs
        for rs in items
        if any(
            ref.get("kind") == "Rollout" and ref.get("name") == name
            for ref in rs["metadata"].get("ownerReferences") or []
        )
    ]

    def key(rs: Obj) -> tuple[str, int]:
        meta = rs["metadata"]
        rv = str(meta.get("resourceVersion", "0"))
        return str(meta.get("creationTimestamp", "")), int(rv) if rv.isdigit() else 0

    return sorted(owned, key=key, reverse=True)


def revision_numbers_of(replica_sets: list[Obj], current: str | None) -> dict[str, int]:
    """``{pod-template hash: revision number}`` of a Rollout's ReplicaSets, as the controller
    numbers them (``revision_numbers``): the number it wrote (``rollout.dev/revision``), for
    ReplicaSets made before numbering existed the one it will give them (after the others,
    oldest first), and for ``current`` (the hash of the Rollout's template) the highest."""
    found = []
    for rs in replica_sets:
        meta = rs.get("metadata") or {}
        revision = (meta.get("labels") or {}).get(HASH_LABEL)
        if revision:
            created = _parse_time(meta.get("creationTimestamp"))
            found.append(
                Numbered(revision, parse_revision_number(meta.get("annotations")), created)
            )
    return revision_numbers(found, current)


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _owns(rs: Obj, name: str) -> bool:
    return any(
        ref.get("kind") == "Rollout" and ref.get("name") == name
        for ref in rs.get("metadata", {}).get("ownerReferences") or []
    )


def label_selector(obj: Obj) -> str | None:
    """The Rollout's ``spec.selector.matchLabels`` as a label selector (``app=reviews``), to
    list only its Pods; None (list them all) when it has ``matchExpressions`` or no labels."""
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    if selector.get("matchExpressions") or not labels:
        return None
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _readable(target: Target, res: Resource, selector: str | None = None) -> list[Obj] | None:
    """The namespace's objects of ``res``, or None when the API does not serve them or we may
    not read them (a cluster without Pods, RBAC without Events): ``get`` shows what it can."""
    try:
        items, _ = target.access.list(res, target.namespace, selector)
    except (NotFound, Forbidden):
        return None
    return items


def read_scene(target: Target, name: str) -> Scene:
    """What ``rollout get`` shows of the Rollout ``name``, read from the API now: the Rollout
    (a ClusterError naming it or its namespace when missing), its ReplicaSets, their Pods and
    the namespace's Events (None when they cannot be read)."""
    obj = get_rollout(target, name)
    replica_sets = owned_replica_sets(target, name)
    return Scene(
        rollout=obj,
        replica_sets=replica_sets,
        pods=_readable(target, PODS, label_selector(obj)),
        events=_readable(target, EVENTS),
        now=datetime.now(UTC),
        numbers=revision_numbers_of(replica_sets, revision_of_rollout(obj)),
    )


def render(obj: Obj, output: str) -> str:
    """The whole object as ``output`` (json or yaml)."""
    if output == "json":
        return json.dumps(obj, indent=2, sort_keys=True)
    import yaml

    return str(yaml.safe_dump(obj, sort_keys=False)).rstrip("\n")


def can_encode(stream: TextIO, text: str) -> bool:
    """Whether ``stream``'s encoding can write ``text`` (else ``get`` draws in ASCII)."""
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def c_locale() -> bool:
    """Whether the locale the user runs in is C or POSIX (or none is set), which says the
    terminal may show nothing but ASCII. Python writes UTF-8 there anyway: it turns on its UTF-8
    mode by itself in exactly that case (PEP 538, PEP 540), so the mode, when neither
    ``PYTHONUTF8`` nor ``-X utf8`` asked for it, is the sign."""
    asked = os.environ.get("PYTHONUTF8") == "1" or "utf8" in sys._xoptions
    return bool(sys.flags.utf8_mode) and not asked


def cmd_get(
    target: Target,
    name: str,
    *,
    output: str | None = None,
    watch: bool = False,
    timeout: float | None = None,
) -> int:
    """Print the Rollout as a tree (``rollout.view``), or the whole object with ``output``;
    with ``watch``, again on each change until Ctrl-C or the timeout (``watch_tree``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if output is not None:
        objects = follow(target, name, deadline) if watch else iter([get_rollout(target, name)])
        for i, obj in enumerate(objects):
            if i:
                target.say("---" if output == "yaml" else "")
            target.say(render(obj, output))
        return 0
    unicode = can_encode(target.out, UNICODE_GLYPHS) and not c_locale()
    if not watch:
        target.say(render_scene(read_scene(target, name), unicode=unicode))
        return 0
    return watch_tree(target, name, deadline, unicode=unicode)


# -- get --watch -------------------------------------------------------------------------------

TICK_SECONDS = 1.0  # ages are redrawn this often, from the watch caches (no API call)
MIN_REDRAW_SECONDS = 0.2  # a burst of watch events is drawn once
WATCH_GIVE_UP_SECONDS = 60.0  # the watch keeps failing this long: exit (the API is unreachable)
_CACHE_LOGGER = "rollout.cluster.cache"


class _Witness:
    """The ``ClusterAccess`` the watch caches read through: it passes lists and watches on and
    notes whether they work, so that the screen can say the watch is broken (since when, why)
    and the command can give up. A list that answers, a watch event or the clean end of a
    stream proves the API works again; ``Gone`` is no failure (a list follows)."""

    def __init__(self, inner: ClusterAccess) -> None:
        self.inner = inner
        self.failing_since: float | None = None
        self.failure: str | None = None

    def _worked(self) -> None:
        self.failing_since = self.failure = None

    def _failed(self, error: ClusterError) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.failure = " ".join(str(error).split())

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        try:
            found = self.inner.list(res, namespace, label_selector)
        except Gone:
            raise
        except ClusterError as error:
            self._failed(error)
            raise
        self._worked()
        return found

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        try:
            events = self.inner.watch(
                res,
                namespace,
                resource_version,
                timeout_seconds=timeout_seconds,
                label_selector=label_selector,
            )
            for event in events:
                self._worked()
                yield event
        except Gone:
            raise
        except ClusterError as error:
            self._failed(error)
            raise
        self._worked()


class LiveScene:
    """``get --watch``'s copy of one Rollout's world: watch caches (``Informer``: list, then
    watch, resumed and re-listed on their own with backoff) of the namespace's Rollouts,
    ReplicaSets, Pods (when the cluster serves them; only the Rollout's, by its selector) and
    Events. ``changed`` is set by every watch event; ``problem`` says when the watch is broken.
    """

    def __init__(self, target: Target, first: Scene, max_backoff: float = 5.0) -> None:
        from rollout.cluster.cache import Informer

        self.name = str(first.rollout["metadata"]["name"])
        self.namespace = target.namespace
        self.changed = threading.Event()
        self.witness = _Witness(target.access)
        access = cast(ClusterAccess, self.witness)  # the caches use list and watch only
        ns = target.namespace
        self.rollouts = Informer(access, ROLLOUTS, ns, max_backoff=max_backoff)
        self.replica_sets = Informer(access, REPLICA_SETS, ns, max_backoff=max_backoff)
        selector = label_selector(first.rollout)
        self.pods = (
            None
            if first.pods is None
            else Informer(access, PODS, ns, label_selector=selector, max_backoff=max_backoff)
        )
        self.events = (
            None if first.events is None else Informer(access, EVENTS, ns, max_backoff=max_backoff)
        )
        # The caches log each failure before retrying: the screen says it instead (``problem``).
        self._quiet = logging.NullHandler()
        self._propagate = True

    def _informers(self) -> list[Any]:
        return [i for i in (self.rollouts, self.replica_sets, self.pods, self.events) if i]

    def _on_event(self, _type: str, _obj: Obj) -> None:
        self.changed.set()

    def start(self) -> None:
        logger = logging.getLogger(_CACHE_LOGGER)
        logger.addHandler(self._quiet)
        self._propagate, logger.propagate = logger.propagate, False
        for informer in self._informers():
            informer.add_handler(self._on_event)
            informer.start()

    def stop(self) -> None:
        for informer in self._informers():
            informer.stop()
        logger = logging.getLogger(_CACHE_LOGGER)
        logger.removeHandler(self._quiet)
        logger.propagate = self._propagate

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self._informers())

    def scene(self, now: datetime) -> Scene | None:
        """The Scene from the caches (None: the Rollout is gone); no API call."""
        obj = self.rollouts.get(self.namespace, self.name)
        if obj is None:
            return None
        replica_sets = [rs for rs in self.replica_sets.list() if _owns(rs, self.name)]
        return Scene(
            rollout=obj,
            replica_sets=replica_sets,
            pods=None if self.pods is None else self.pods.list(),
            events=None if self.events is None else self.events.list(),
            now=now,
            problem=self.problem(),
            numbers=revision_numbers_of(replica_sets, revision_of_rollout(obj)),
        )

    def problem(self) -> str | None:
        """A line about the watch while it fails (it is being retried), else None."""
        failure = self.witness.failure
        return None if failure is None else f"watch interrupted, retrying: {failure}"

    def failing_for(self) -> float:
        """Seconds the watch has been failing without a break (0 while it works)."""
        since = self.witness.failing_since
        return 0.0 if since is None else time.monotonic() - since


def fit(text: str, columns: int, rows: int) -> str:
    """``text`` cut to what a ``columns`` x ``rows`` screen shows without scrolling (long lines
    wrap and take several rows); a last line says how many lines did not fit."""
    lines = text.split("\n")
    used, kept = 0, []
    for i, line in enumerate(lines):
        need = max(1, -(-len(line) // max(columns, 1)))
        if used + need > rows - 1 and i < len(lines) - 1 or used + need > rows:
            kept.append(f"... {len(lines) - i} more line(s): make the terminal taller"[:columns])
            break
        kept.append(line)
        used += need
    return "\n".join(kept)


class _Screen:
    """Where frames go: on a terminal, each frame replaces the last (cursor home, lines
    overwritten, the rest cleared, cut to the window); elsewhere, each frame in full after a
    ``---`` line.

    On a terminal the window's size is read from the stream written to, at every frame: a frame
    is drawn again when the window was resized, even if its text did not change (ages can stay
    the same for minutes). The last row is written without a newline, so that a frame as tall
    as the window does not scroll its first line away.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.frames = 0
        self.last: tuple[str, tuple[int, int]] | None = None

    def size(self) -> tuple[int, int]:
        """(columns, rows) of the terminal written to (kubectl's 80 x 24 when unknown)."""
        try:
            found = os.get_terminal_size(self.out.fileno())
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            found = shutil.get_terminal_size()
        return (found.columns or 80, found.lines or 24)

    def draw(self, text: str) -> None:
        size = self.size() if self.tty else (0, 0)
        if (text, size) == self.last:
            return
        self.last = (text, size)
        if not self.tty:
            self.out.write(("---\n" if self.frames else "") + text + "\n")
        else:
            shown = fit(text, *size)
            body = "\n".join(line + "\x1b[K" for line in shown.split("\n"))
            start = "\x1b[?25l\x1b[H\x1b[2J" if not self.frames else "\x1b[H"
            self.out.write(start + body + "\x1b[J")
        self.out.flush()
        self.frames += 1

    def close(self) -> None:
        """Show the cursor again, below the last frame."""
        if self.tty and self.frames:
            self.out.write("\x1b[?25h\n")
            self.out.flush()


def watch_tree(
    target: Target,
    name: str,
    deadline: float | None,
    *,
    unicode: bool = True,
    give_up: float = WATCH_GIVE_UP_SECONDS,
) -> int:
    """``rollout get NAME --watch``: draw the Rollout's tree, then again whenever the Rollout,
    its ReplicaSets, Pods or Events change (watch events, ``LiveScene``), and every
    ``TICK_SECONDS`` for the ages (from the watch caches: no API call). On a terminal each frame
    replaces the last; otherwise frames follow each other, printed only when objects changed.

    Returns 0 at the deadline (``time.monotonic()``); raises ClusterError when the Rollout is
    deleted, ``Unavailable`` when its watch has failed for ``give_up`` seconds in a row.
    """
    first = read_scene(target, name)
    screen = _Screen(target.out)
    screen.draw(render_scene(first, unicode=unicode))
    live = LiveScene(target, first)
    live.start()
    drawn_at = time.monotonic()
    # Without a terminal, a frame is printed when what it shows changes, ages aside.
    shown = render_scene(first, unicode=unicode)
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            changed = live.changed.wait(TICK_SECONDS if left is None else min(TICK_SECONDS, left))
            if changed:
                # draw a burst of events once, at most every MIN_REDRAW_SECONDS
                time.sleep(max(0.0, drawn_at + MIN_REDRAW_SECONDS - time.monotonic()))
                live.changed.clear()
            now = datetime.now(UTC)
            if not live.synced():
                scene: Scene | None = dataclasses.replace(first, now=now, problem=live.problem())
            else:
                scene = live.scene(now)
            if scene is None:
                raise ClusterError(f'rollout "{name}" was deleted')
            text = render_scene(scene, unicode=unicode)
            content = render_scene(dataclasses.replace(scene, now=first.now), unicode=unicode)
            if screen.tty or content != shown:
                screen.draw(text)
                drawn_at = time.monotonic()
                shown = content
            if live.failing_for() > give_up:
                raise Unavailable(
                    f'lost the watch of rollout "{name}" for {give_up:g}s: {live.witness.failure}'
                )
    finally:
        live.stop()
        screen.close()


def _number(value: Any) -> str:
    """A weight as people write it: ``30``, ``0``, ``12.5``; ``-`` when unset."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return "-" if value is None else str(value)


def images_of(obj: Obj) -> tuple[str, str]:
    """The pod template's container names and images, each comma-separated in the same order
    (init containers first), as ``kubectl get deployments -o wide`` shows them."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    names = ",".join(str(c.get("name", "?")) for c in containers if isinstance(c, dict))
    images = ",".join(str(c.get("image", "-")) for c in containers if isinstance(c, dict))
    return names or "-", images or "-"


def as_list(items: list[Obj]) -> Obj:
    """``items`` as kubectl prints a list with ``-o json|yaml``: a ``v1`` ``List`` whose items
    carry their ``apiVersion`` and ``kind`` (a list reply from the API leaves them out)."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": ROLLOUTS.api_version, "kind": ROLLOUTS.kind, **item} for item in items
        ],
    }


def cmd_list(target: Target, *, all_namespaces: bool = False, output: str | None = None) -> int:
    """``rollout list``: a table (``output`` None, or ``wide`` with containers, images,
    revisions, the stable/canary/mirror weights in percent and the message), or
    ``json``/``yaml``: a ``List`` of the objects. An unknown ``output`` is ``BadInput``."""
    if output is not None and output not in LIST_OUTPUTS:
        raise BadInput(f"--output {output!r}: must be one of {', '.join(LIST_OUTPUTS)}")
    items, _ = target.access.list(ROLLOUTS, None if all_namespaces else target.namespace)
    items = sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    if output in ("json", "yaml"):
        target.say(render(as_list(items), output))
        return 0
    if not items:
        where = "any namespace" if all_namespaces else f'namespace "{target.namespace}"'
        target.warn(f"no rollouts found in {where}")
        return 0
    wide = output == "wide"
    header = ["NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "AGE"]
    if wide:
        header += ["CONTAINERS", "IMAGES", "STABLE", "CANARY", "WEIGHTS", "MESSAGE"]
    if all_namespaces:
        header = ["NAMESPACE", *header]
    rows = [header]
    for obj in items:
        meta, st = obj["metadata"], _status(obj)
        weight = weights_of(obj).get("canary")
        row = [
            meta["name"],
            strategy_of(obj),
            str(st.get("phase") or "Unknown"),
            step_of(obj),
            "-" if weight is None else str(weight),
            age(meta.get("creationTimestamp")),
        ]
        if wide:
            w = weights_of(obj)
            weights = "/".join(_number(w.get(k)) for k in ("stable", "canary", "mirror"))
            row += [
                *images_of(obj),
                str(st.get("stableRevision") or "-"),
                str(st.get("canaryRevision") or "-"),
                weights,
                " ".join(str(st.get("message") or "-").split()),
            ]
        rows.append([meta.get("namespace", ""), *row] if all_namespaces else row)
    target.say(table(rows))
    return 0


def _turn(st: Obj) -> tuple[Any, ...]:
    """What of a status makes ``rollout status`` print a line: the gate's and its checks'
    phases, the pause reasons, the abort flag; not the message as such, which counts every
    measurement ("gate Running: error-rate 55, latency 55") and printed a line per measurement
    for as long as a gate ran, hundreds of lines in a CI log during one paused step."""
    gate = st.get("analysis") or {}
    checks = tuple(
        (c.get("name"), c.get("phase")) for c in gate.get("checks") or [] if isinstance(c, dict)
    )
    pauses = tuple(
        sorted(str(p.get("reason")) for p in st.get("pauseConditions") or [] if isinstance(p, dict))
    )
    return gate.get("phase"), checks, pauses, bool(st.get("abort"))


def cmd_status(target: Target, name: str, *, timeout: float | None = None) -> int:
    """Wait until Healthy at the current generation (0), Degraded (1) or the timeout (2).

    Prints a line (phase, step, canary weight, message) when the phase, step, weight, the
    gate's or a check's phase, the pauses or the abort flag change (``_turn``), not on every
    measurement."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[Any, ...] | None = None
    for obj in follow(target, name, deadline):
        st = _status(obj)
        phase = st.get("phase") or "Unknown"
        observed = st.get("observedGeneration") == obj["metadata"].get("generation")
        line = (phase, step_of(obj), weights_of(obj).get("canary"), _turn(st), observed)
        if line != last:
            note = "" if observed else " (waiting for the controller to observe generation)"
            where = ", ".join(
                ([] if line[1] == "-" else [f"step {line[1]}"])
                + ([] if line[2] is None else [f"canary weight {line[2]}%"])
            )
            lead = f"{phase}: {where}" if where else phase
            target.say(f"{lead}: {st.get('message') or '-'}{note}")
            last = line
        if observed and phase == "Healthy":
            target.say(f'rollout "{name}" is Healthy')
            return EXIT_HEALTHY
        # Aborted by an operator, then retried: Degraded until the controller sees the retry.
        retried = not st.get("abort") and any(
            c.get("type") == "Progressing" and c.get("reason") == "RolloutAborted"
            for c in st.get("conditions") or []
        )
        if observed and phase == "Degraded" and not retried:
            target.warn(f'rollout "{name}" is Degraded: {st.get("message") or "-"}')
            return EXIT_DEGRADED
    phase = (last or ("Unknown",))[0]
    target.warn(f'timed out waiting for rollout "{name}" (phase {phase})')
    return EXIT_TIMEOUT


# -- operator actions (status subresource) -----------------------------------------------------

Decision = tuple[Obj | None, str]  # (patch, message); no patch: nothing to do, message says why


def _in_progress(st: Obj) -> bool:
    canary, stable = st.get("canaryRevision"), st.get("stableRevision")
    return bool(canary) and canary != stable


def _update(
    target: Target,
    name: str,
    decide: Callable[[Obj], Decision],
    *,
    subresource: bool = True,
    warning: str | None = None,
) -> int:
    """Read, decide, patch with the read version as a precondition; again on Conflict."""
    for _ in range(CONFLICT_RETRIES):
        obj = get_rollout(target, name)
        patch, message = decide(obj)
        if patch is None:
            target.say(message)
            return 0
        if warning:
            target.warn(warning)
            warning = None
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, **patch}
        try:
            if subresource:
                target.access.patch_status(ROLLOUTS, target.namespace, name, body)
            else:
                target.access.patch(ROLLOUTS, target.namespace, name, body)
        except Conflict:
            continue
        target.say(message)
        return 0
    raise ClusterError(f'rollout "{name}" kept changing: gave up after {CONFLICT_RETRIES} tries')


def cmd_promote(target: Target, name: str, *, full: bool = False) -> int:
    def decide(obj: Obj) -> Decision:
        st = _status(obj)
        if st.get("abort"):
            return None, f'rollout "{name}" is aborted: nothing to promote (use `rollout retry`)'
        pauses = st.get("pauseConditions") or []
        progressing = _in_progress(st) or st.get("phase") == "Progressing"
        if full and progressing:
            if st.get("promoteFull"):
                return None, f'rollout "{name}" is already being fully promoted'
            patch: Obj = {"promoteFull": True}
            if pauses:
                patch["pauseConditions"] = []
            return {"status": patch}, f'rollout "{name}" promoted fully: skipping remaining steps'
        if pauses:
            reasons = ", ".join(str(p.get("reason")) for p in pauses)
            return {"status": {"pauseConditions": []}}, f'rollout "{name}" promoted ({reasons})'
        if progressing:
            return None, (
                f'nothing to promote: rollout "{name}" is not paused (step {step_of(obj)}); '
                "use --full to skip the remaining steps"
            )
        return None, f"nothing to promote: rollout is {st.get('phase') or 'not started'}"

    return _update(target, name, decide)


def cmd_abort(target: Target, name: str) -> int:
    def decide(obj: Obj) -> Decision:
        st = _status(obj)
        if st.get("abort"):
            return None, f'rollout "{name}" is already aborted'
        if not _in_progress(st):
            return None, f"nothing to abort: rollout is {st.get('phase') or 'not started'}"
        return {"status": {"abort": True}}, f'rollout "{name}" aborted'

    return _update(target, name, decide)


def cmd_retry(target: Target, name: str) -> int:
    def decide(obj: Obj) -> Decision:
        if not _status(obj).get("abort"):
            return None, f'nothing to retry: rollout "{name}" is not aborted'
        return {"status": {"abort": False}}, f'rollout "{name}" retried'

    return _update(target, name, decide)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_pause(target: Target, name: str) -> int:
    def decide(obj: Obj) -> Decision:
        pauses = list(_status(obj).get("pauseConditions") or [])
        if _status(obj).get("pausedByUser") is True or any(
            p.get("reason") == PAUSE_USER for p in pauses
        ):
            return None, f'rollout "{name}" is already paused'
        pauses.append({"reason": PAUSE_USER, "startTime": _now()})
        return {"status": {"pauseConditions": pauses}}, f'rollout "{name}" paused'

    return _update(target, name, decide)


def cmd_resume(target: Target, name: str) -> int:
    def decide(obj: Obj) -> Decision:
        pauses = list(_status(obj).get("pauseConditions") or [])
        kept = [p for p in pauses if p.get("reason") != PAUSE_USER]
        # the Argo CD pause action's request, not yet turned into a pause by the controller
        requested = _status(obj).get("pausedByUser") is True
        if len(kept) == len(pauses) and not requested:
            return None, f'nothing to resume: rollout "{name}" is not paused by `rollout pause`'
        message = f'rollout "{name}" resumed'
        if kept:
            reasons = ", ".join(str(p.get("reason")) for p in kept)
            message += f" (still paused: {reasons}; use `rollout promote`)"
        patch: Obj = {"pauseConditions": kept}
        if requested:
            patch["pausedByUser"] = None
        return {"status": patch}, message

    return _update(target, name, decide)


# -- spec changes ------------------------------------------------------------------------------


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    patch: Obj = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


def _template_patch(obj: Obj, template: Obj) -> Obj:
    return {"spec": {"template": merge_diff(obj["spec"]["template"], template)}}


def revision_of_rollout(obj: Obj) -> str | None:
    """The revision (pod-template hash) of a Rollout's template; None when it does not parse."""
    try:
        return revision_of((obj.get("spec") or {}).get("template") or {})
    except ValueError:
        return None


def revision_of(template: Obj) -> str:
    from rollout.api.rollout import PodTemplate
    from rollout.domain.revision import pod_template_hash

    return pod_template_hash(PodTemplate.model_validate(template).wire())


def template_of(rs: Obj, rollout_name: str) -> Obj:
    """A ReplicaSet's pod template as the Rollout had it, so that it hashes to the ReplicaSet's
    revision again: the template the controller recorded on it (``TEMPLATE_ANNOTATION``: a real
    apiserver stores the ReplicaSet's own template with the pod defaults filled in), else (a
    ReplicaSet made before the record, or too big a template) its stored template with the
    controller's labels removed."""
    meta = rs.get("metadata") or {}
    revision = (meta.get("labels") or {}).get(HASH_LABEL)
    if revision is not None:
        recorded = recorded_template(meta.get("annotations"), revision)
        if recorded is not None:
            return recorded
    template: Obj = copy.deepcopy(rs["spec"]["template"])
    labels = template.get("metadata", {}).get("labels") or {}
    revision = labels.pop(HASH_LABEL, None)
    if labels.get(CANONICAL_NAME) == rollout_name:
        del labels[CANONICAL_NAME]
    if revision is not None and labels.get(CANONICAL_REVISION) == revision:
        del labels[CANONICAL_REVISION]
    return template


def _spec_change(target: Target, name: str, decide: Callable[[Obj], Decision]) -> int:
    return _update(target, name, decide, subresource=False, warning=SPEC_WARNING.format(name=name))


def cmd_undo(target: Target, name: str, *, to_revision: int = 0) -> int:
    """``rollout undo NAME [--to-revision N]``: set the pod template back to revision ``N``'s.

    ``N`` is the absolute revision number (``rollout.dev/revision`` on the ReplicaSets, as
    ``kubectl rollout undo --to-revision`` and Argo's plugin mean it); 0 (the default) means the
    previous revision: the stable one while an update is in progress, else the highest-numbered
    one besides the current template's. The revision rolled back to becomes the newest, with the
    next number (as a Deployment's does). An unknown ``N`` is a ``ClusterError`` that lists the
    known revisions; nothing is changed. ``N`` being the current template is nothing to do.
    """

    def decide(obj: Obj) -> Decision:
        current = revision_of(obj["spec"]["template"])
        owned = owned_replica_sets(target, name)
        numbers = revision_numbers_of(owned, current)
        by_hash = {(rs["metadata"].get("labels") or {}).get(HASH_LABEL): rs for rs in owned}
        known = sorted((n, h) for h, n in numbers.items() if h in by_hash)
        listing = ", ".join(f"{n} ({h}{', current' if h == current else ''})" for n, h in known)
        if to_revision:
            wanted = next((h for n, h in known if n == to_revision), None)
            if wanted is None:
                raise BadInput(
                    f'--to-revision {to_revision}: rollout "{name}" has no revision '
                    f"{to_revision}; known revisions: {listing or 'none'}"
                )
            if wanted == current:
                return None, (
                    f'rollout "{name}" is already at the pod template of revision {to_revision}'
                )
        else:
            stable = _status(obj).get("stableRevision")
            previous = [(n, h) for n, h in known if h != current]
            if not previous:
                raise ClusterError(f'rollout "{name}" has no previous revision to go back to')
            # Mid-update the previous revision is the stable one (the newest that served; an
            # earlier undo may have made an older template the newest number), else the newest.
            wanted = stable if stable in {h for _, h in previous} else previous[-1][1]
        rs = by_hash[wanted]
        number = numbers[wanted]
        template = template_of(rs, name)
        patch = _template_patch(obj, template)
        becomes = revision_of(template)
        if becomes != wanted:
            # No valid record on the ReplicaSet and its stored template was defaulted by the API
            # server: the same pods, but a new revision that goes through every step again.
            return patch, (
                f'rollout "{name}" rolled back to the pod template of revision {number} '
                f"({wanted}), as a new revision {becomes}: its ReplicaSet has no valid "
                f"{TEMPLATE_ANNOTATION} annotation, and the template stored on it (with the API "
                "server's pod defaults) does not hash to its revision; the update goes through "
                "every step"
            )
        newest = max((n for n, h in known if h != wanted), default=0)
        return patch, (
            f'rollout "{name}" rolled back to revision {number} ({wanted}); '
            f"it becomes revision {max(number, newest + 1)}"
        )

    return _spec_change(target, name, decide)


def cmd_restart(target: Target, name: str) -> int:
    def decide(obj: Obj) -> Decision:
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: _now()}}}}}
        return patch, f'rollout "{name}" restarted: a new revision rolls out with its steps'

    return _spec_change(target, name, decide)


ALL_CONTAINERS = "*"


def parse_images(pairs: list[str]) -> dict[str, str]:
    """``CONTAINER=IMAGE`` pairs as a dict; ``*=IMAGE`` (alone) means every container and init
    container, as for ``kubectl set image``. Raises ValueError naming the bad pair (no ``=``,
    an empty side, whitespace anywhere, ``*`` given with other names)."""
    images: dict[str, str] = {}
    for pair in pairs:
        container, sep, image = pair.partition("=")
        if not sep or not container or not image:
            raise ValueError(f"{pair!r}: expected CONTAINER=IMAGE")
        if any(c.isspace() for c in pair):
            # the API server rejects such a Pod ("must not have leading or trailing
            # whitespace"), but only when the controller creates the ReplicaSet
            raise ValueError(f"{pair!r}: a container name or image has no spaces")
        images[container] = image
    if ALL_CONTAINERS in images and len(images) > 1:
        raise ValueError(f"{ALL_CONTAINERS}=IMAGE already sets every container: give it alone")
    return images


def cmd_set_image(target: Target, name: str, images: dict[str, str]) -> int:
    """Set the images of the named containers (init containers too), or of all with ``*``.
    A name the pod template does not have is ``BadInput`` naming the ones it has; nothing is
    changed then."""

    def decide(obj: Obj) -> Decision:
        template = copy.deepcopy(obj["spec"]["template"])
        pod = template.setdefault("spec", {})
        found: set[str] = set()
        known: dict[str, list[str]] = {}
        changed = False
        for key in ("initContainers", "containers"):
            for container in pod.get(key) or []:
                known.setdefault(key, []).append(str(container.get("name")))
                image = images.get(ALL_CONTAINERS, images.get(container.get("name")))
                if image is None:
                    continue
                found.add(container["name"])
                if container.get("image") != image:
                    container["image"] = image
                    changed = True
        missing = sorted(images.keys() - found - {ALL_CONTAINERS})
        if missing:
            has = "; ".join(f"{key}: {', '.join(names)}" for key, names in known.items())
            raise BadInput(
                f'rollout "{name}" has no container {", ".join(missing)} ({has or "none"})'
            )
        if not changed:
            return None, f'rollout "{name}": image unchanged'
        return _template_patch(obj, template), f'rollout "{name}" image updated'

    return _spec_change(target, name, decide)
