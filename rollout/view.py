"""``rollout get``'s screen: one Rollout, its revisions, gate checks and Events, as text. Pure.

``render(scene)`` takes the objects as the API returns them (plain dicts) and the time to
measure ages from, and returns the text; nothing here reads a clock, a terminal or the API, so
every screen is a unit test away. The layout follows what an operator coming from
``kubectl argo rollouts get rollout`` expects to find, plus what our gate knows:

- a header: name, namespace, status with an icon and its reason (``॥ Paused
  (CanaryPauseStep)``), the controller's message, the strategy, ``Step: i/n`` in the one step
  numbering (``rollout.domain.steps.step_number``) with the step's action, the desired and the
  actual (read back) weight, the images of each live revision labelled by role (stable /
  canary; blue-green: active / preview), and replica counts;
- a tree: the Rollout, then each revision (``# revision:N`` from the ReplicaSet's
  ``rollout.dev/revision`` annotation, else its pod-template hash), its ReplicaSet with role,
  desired/ready/available and age, and the ReplicaSet's Pods (status, ready x/y, restarts, age)
  when the cluster has Pods;
- the gate's checks: last value with unit and threshold (``84 ms (max 250)``), counts, and the
  reason of the last verdict. After an abort a check that was still measuring is shown as
  Stopped, never Running: the controller measures nothing for an aborted rollout;
- the last few Events of the Rollout.

Icons are Unicode by default; ``unicode=False`` gives ASCII for terminals that cannot encode
them (the CLI decides from its output's encoding and the locale: ``rollout.ops.c_locale``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any

from rollout.api.rollout import RolloutSpec
from rollout.api.strategy import SetHeaderRoute
from rollout.domain.revision import HASH_LABEL, parse_revision_number
from rollout.domain.steps import describe, step_number, steps_of, traffic_at

Obj = dict[str, Any]

EVENTS_SHOWN = 5
# The controller's note on a ReplicaSet of when it scales it down (rollout.controller.observe).
SCALE_DOWN_AT = "rollout.dev/scale-down-at"

# (unicode, ascii) per meaning
_ICONS: dict[str, tuple[str, str]] = {
    "ok": ("✔", "OK"),
    "progressing": ("◌", ".."),
    "paused": ("॥", "||"),
    "bad": ("✖", "XX"),
    "warning": ("⚠", "!!"),
    "unknown": ("?", "??"),
    "neutral": ("•", "--"),
    "rollout": ("⟳", "@"),
    "revision": ("#", "#"),
    "replicaset": ("⧉", "+"),
    "pod": ("□", "-"),
    "branch": ("├──", "|--"),
    "last": ("└──", "`--"),
    "pipe": ("│  ", "|  "),
    "verdict": ("└", "`"),
}
# A string holding every Unicode glyph above: the CLI checks its output can encode it.
UNICODE_GLYPHS = "".join(u for u, _ in _ICONS.values())

_PHASE_ICON = {
    "Healthy": "ok",
    "Progressing": "progressing",
    "Paused": "paused",
    "Degraded": "bad",
}
_CHECK_ICON = {
    "Successful": "ok",
    "Failed": "bad",
    "Error": "warning",
    "Inconclusive": "unknown",
    "Running": "progressing",
    "Pending": "progressing",
    "Stopped": "neutral",
}
_STRATEGY_NAME = {"canary": "Canary", "blueGreen": "BlueGreen", "mirror": "Mirror"}


@dataclass(frozen=True)
class Scene:
    """Everything one screen shows, as read from the API.

    ``pods`` is None when the cluster has no Pods to show (the sandbox simulates replicas
    without Pod objects) or they cannot be read; ``events`` None when Events cannot be read.
    ``now`` is the instant ages are measured from. ``problem`` is a line about the watch
    itself (e.g. the API unreachable, being retried), shown at the bottom.
    """

    rollout: Obj
    replica_sets: Sequence[Obj] = ()
    pods: Sequence[Obj] | None = None
    events: Sequence[Obj] | None = None
    now: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    problem: str | None = None
    numbers: Mapping[str, int] = dataclass_field(default_factory=dict)
    """``{pod-template hash: revision number}`` for ReplicaSets without a
    ``rollout.dev/revision`` annotation (made before numbering existed): the number the
    controller will give them."""


class _Glyphs:
    def __init__(self, unicode: bool) -> None:
        self.index = 0 if unicode else 1

    def __call__(self, name: str) -> str:
        return _ICONS[name][self.index]


# -- small readers ------------------------------------------------------------------------------


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (``2026-01-01T00:00:00Z``, fractions allowed), else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def age(timestamp: Any, now: datetime) -> str:
    """kubectl's short age of ``timestamp`` at ``now``: ``45s``, ``3m12s``, ``2h5m``, ``4d``;
    ``-`` when unknown."""
    then = parse_time(timestamp)
    if then is None:
        return "-"
    seconds = max(int((now - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes and hours < 8 else f"{hours}h"
    return f"{hours // 24}d"


def _number(value: float) -> str:
    """A measured value for people: whole numbers as such, else four significant digits."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _labels(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("labels") or {}


def strategy_key(rollout: Obj) -> str:
    """``canary``, ``blueGreen`` or ``mirror`` (the status', else the spec's first key)."""
    recorded = _status(rollout).get("strategy")
    if isinstance(recorded, str) and recorded:
        return recorded
    strategy = _spec(rollout).get("strategy") or {}
    return next(iter(strategy), "")


def _steps(rollout: Obj) -> list[Any]:
    """The strategy's steps (``rollout.domain.steps``), or [] when the spec does not parse."""
    try:
        return list(steps_of(RolloutSpec.model_validate(_spec(rollout))))
    except ValueError:
        return []


# -- roles and revisions ------------------------------------------------------------------------


def role_of(rollout: Obj, rs: Obj) -> str:
    """A ReplicaSet's role for people: ``stable`` / ``canary`` (canary and mirror), ``active`` /
    ``preview`` (blue-green: active is the revision the live traffic goes to), else ``old``."""
    st = _status(rollout)
    revision = _labels(rs).get(HASH_LABEL)
    stable, canary = st.get("stableRevision"), st.get("canaryRevision")
    updating = canary is not None and canary != stable
    if revision is None or revision not in (stable, canary):
        return "old"
    if strategy_key(rollout) != "blueGreen":
        return "stable" if revision == stable else "canary"
    switched = updating and int((st.get("weights") or {}).get("canary", 0)) >= 50
    if not updating:
        return "active"
    if revision == canary:
        return "active" if switched else "preview"
    return "old" if switched else "active"


def revision_number(rs: Obj, numbers: Mapping[str, int] | None = None) -> int | None:
    """The ReplicaSet's ``rollout.dev/revision`` annotation as a positive number, else its
    number in ``numbers`` (by pod-template hash), else None."""
    number = parse_revision_number(_meta(rs).get("annotations"))
    if number is None and numbers:
        number = numbers.get(str(_labels(rs).get(HASH_LABEL)))
    return number


def _newest_first(
    replica_sets: Iterable[Obj], numbers: Mapping[str, int] | None = None
) -> list[Obj]:
    def key(rs: Obj) -> tuple[int, str]:
        number = revision_number(rs, numbers)
        return (-1 if number is None else number, str(_meta(rs).get("creationTimestamp", "")))

    return sorted(replica_sets, key=key, reverse=True)


def _images(template: Any) -> list[str]:
    """The images of a pod template, init containers first. The Rollout's ``spec.template.spec``
    is kept as written (the CRD preserves unknown fields there), so anything that is not a list
    of objects is skipped rather than read."""
    pod = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict):
        return []
    return [
        str(c.get("image", "?"))
        for key in ("initContainers", "containers")
        if isinstance(pod.get(key), list)
        for c in pod[key]
        if isinstance(c, dict)
    ]


# -- the header ---------------------------------------------------------------------------------


def status_reason(rollout: Obj) -> str:
    """Why the Rollout is in its phase: the pause reasons, the abort's reason, or the reason of
    a failing condition (``InvalidSpec``, ``ProgressDeadlineExceeded``); "" when none."""
    st = _status(rollout)
    phase = st.get("phase")
    if phase == "Paused":
        reasons = [str(p.get("reason")) for p in st.get("pauseConditions") or []]
        return ", ".join(dict.fromkeys(r for r in reasons if r))
    if phase == "Degraded":
        if st.get("abortReason"):
            return str(st["abortReason"])
        conditions = {c.get("type"): c for c in st.get("conditions") or []}
        for kind, failing in (("InvalidSpec", "True"), ("Progressing", "False")):
            condition = conditions.get(kind) or {}
            if condition.get("status") == failing and condition.get("reason"):
                return str(condition["reason"])
    return ""


def _status_text(rollout: Obj, glyph: _Glyphs) -> str:
    st = _status(rollout)
    phase = st.get("phase") or "Unknown"
    reason = status_reason(rollout)
    text = f"{glyph(_PHASE_ICON.get(phase, 'unknown'))} {phase}"
    if reason:
        text += f" ({reason})"
    generation = _meta(rollout).get("generation")
    observed = st.get("observedGeneration")
    if generation is not None and observed != generation:
        text += f"; generation {generation} not yet seen by the controller"
    return text


def _step_lines(rollout: Obj, steps: list[Any]) -> list[tuple[str, str]]:
    st = _status(rollout)
    index = st.get("currentStepIndex")
    count = st.get("stepCount") or len(steps)
    stable, canary = st.get("stableRevision"), st.get("canaryRevision")
    updating = canary is not None and canary != stable
    lines: list[tuple[str, str]] = []
    number = step_number(index if isinstance(index, int) else None, int(count or 0))
    # The spec's steps are those the status counts (else the spec changed, or does not parse).
    known = bool(steps) and len(steps) == count
    if number != "-" and isinstance(index, int):
        if index >= count:
            action = "promoting" if updating else "complete"
        else:
            action = describe(steps[index]) if known else ""
        if st.get("abort"):
            action = f"{action}, aborted" if action else "aborted"
        number = f"{number} ({action})" if action else number
    lines.append(("Step:", number))
    weights = st.get("weights") or {}
    kind = strategy_key(rollout)
    if kind in ("canary", "mirror"):
        routes: tuple[Any, ...] = ()
        if st.get("abort") or not isinstance(index, int):
            desired = 0 if st.get("abort") else None
            mirror = 0.0
        elif not updating or index >= count:
            desired, mirror = 100, 0.0
        elif not known:
            desired, mirror = None, 0.0
        else:
            traffic = traffic_at(steps, index)
            desired, mirror, routes = traffic.weight, traffic.mirror, traffic.header_routes
        actual = weights.get("stable" if not updating else "canary")
        lines.append(("SetWeight:", "-" if desired is None else str(desired)))
        actual_text = "-" if actual is None else str(actual)
        if updating and weights:
            actual_text += f" (stable {weights.get('stable', '-')})"
        lines.append(("ActualWeight:", actual_text))
        for i, route in enumerate(routes):
            lines.append(("HeaderRoute:" if i == 0 else "", header_route(route)))
        if mirror or weights.get("mirror"):
            lines.append(
                (
                    "Mirror:",
                    f"{_number(float(mirror))}% set, "
                    f"{_number(float(weights.get('mirror') or 0))}% actual",
                )
            )
    elif kind == "blueGreen" and updating:
        share = int(weights.get("canary", 0))
        lines.append(
            (
                "Switched:",
                f"yes: the new revision is active ({share}% of live traffic)"
                if share >= 50
                else f"no: live traffic goes to active, preview has {share}%",
            )
        )
    return lines


def header_route(route: SetHeaderRoute) -> str:
    """A ``setHeaderRoute`` in force, as people read it: ``testers: x-canary exact "always" or
    x-user prefix "qa-"`` (its name, then its matches: any of them, each header of one)."""
    matches = []
    for match in route.match:
        conditions = []
        for header, condition in match.headers.items():
            for how in ("exact", "prefix", "regex"):
                value = getattr(condition, how)
                if value is not None:
                    conditions.append(f'{header} {how} "{value}"')
        matches.append(", ".join(conditions))
    return f"{route.name}: {' or '.join(matches)}"


def _image_lines(rollout: Obj, replica_sets: Sequence[Obj]) -> list[str]:
    tagged: dict[str, list[str]] = {}
    order = {"stable": 0, "active": 0, "canary": 1, "preview": 1}
    live = sorted(
        ((role_of(rollout, rs), rs) for rs in replica_sets),
        key=lambda pair: order.get(pair[0], 2),
    )
    for role, rs in live:
        if role == "old":
            continue
        for image in _images(_spec(rs).get("template") or {}):
            roles = tagged.setdefault(image, [])
            if role not in roles:
                roles.append(role)
    if not tagged:  # no ReplicaSet yet: the spec's
        return [
            f"{image} (not deployed)" for image in _images(_spec(rollout).get("template") or {})
        ]
    return [f"{image} ({', '.join(roles)})" for image, roles in tagged.items()]


def _replica_lines(rollout: Obj, replica_sets: Sequence[Obj]) -> list[tuple[str, str]]:
    st = _status(rollout)
    canary = st.get("canaryRevision")

    def total(field: str, only: str | None = None) -> int:
        return sum(
            int((rs.get("status") or {}).get(field) or 0)
            for rs in replica_sets
            if only is None or _labels(rs).get(HASH_LABEL) == only
        )

    desired = _spec(rollout).get("replicas", 1)
    return [
        ("  Desired:", str(desired)),
        ("  Current:", str(total("replicas"))),
        ("  Updated:", str(total("replicas", canary) if canary else 0)),
        ("  Ready:", str(total("readyReplicas"))),
        ("  Available:", str(total("availableReplicas"))),
    ]


def _header(scene: Scene, glyph: _Glyphs) -> list[str]:
    rollout = scene.rollout
    meta, st = _meta(rollout), _status(rollout)
    steps = _steps(rollout)
    kind = strategy_key(rollout)
    pairs: list[tuple[str, str]] = [
        ("Name:", str(meta.get("name", ""))),
        ("Namespace:", str(meta.get("namespace", ""))),
        ("Status:", _status_text(rollout, glyph)),
    ]
    if st.get("message"):
        pairs.append(("Message:", str(st["message"])))
    pairs.append(("Strategy:", _STRATEGY_NAME.get(kind, kind or "-")))
    pairs += [("  " + k, v) for k, v in _step_lines(rollout, steps)]
    images = _image_lines(rollout, scene.replica_sets)
    for i, image in enumerate(images or ["-"]):
        pairs.append(("Images:" if i == 0 else "", image))
    pairs.append(("Replicas:", ""))
    pairs += _replica_lines(rollout, scene.replica_sets)
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{k.ljust(width)}{v}".rstrip() for k, v in pairs]


# -- the tree -----------------------------------------------------------------------------------


def replica_set_state(rs: Obj) -> tuple[str, str]:
    """(icon name, status) of a ReplicaSet: Healthy when its available replicas reach the
    desired count, ScaledDown at zero, else Progressing."""
    desired = int(_spec(rs).get("replicas") or 0)
    rst = rs.get("status") or {}
    if desired == 0 and not rst.get("replicas"):
        return "neutral", "ScaledDown"
    if int(rst.get("availableReplicas") or 0) >= desired:
        return "ok", "Healthy"
    return "progressing", "Progressing"


def pod_state(pod: Obj) -> tuple[str, str]:
    """(icon name, status) of a Pod as ``kubectl get pods`` words it: a container's waiting or
    terminated reason (``CrashLoopBackOff``, ``ImagePullBackOff``), Terminating, else the
    phase (Running is ``ok`` only once the Pod is Ready)."""
    if _meta(pod).get("deletionTimestamp"):
        return "progressing", "Terminating"
    pst = pod.get("status") or {}
    phase = str(pst.get("phase") or "Unknown")
    for container in pst.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason and reason not in ("ContainerCreating", "PodInitializing", "Completed"):
                return "bad", str(reason)
    if phase == "Running":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in pst.get("conditions") or []
        )
        return ("ok" if ready else "progressing"), "Running"
    if phase == "Succeeded":
        return "ok", "Completed"
    if phase == "Failed":
        return "bad", str(pst.get("reason") or "Failed")
    if phase == "Pending":
        return "progressing", "Pending"
    return "unknown", phase


def _pod_info(pod: Obj) -> str:
    containers = len(_spec(pod).get("containers") or [])
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return f"ready:{ready}/{containers} restarts:{restarts}"


def _owned_pods(rs: Obj, pods: Sequence[Obj]) -> list[Obj]:
    uid, name = _meta(rs).get("uid"), _meta(rs).get("name")
    owned = [
        pod
        for pod in pods
        if any(
            ref.get("kind") == "ReplicaSet"
            and (ref.get("uid") == uid if uid and ref.get("uid") else ref.get("name") == name)
            for ref in _meta(pod).get("ownerReferences") or []
        )
    ]
    return sorted(owned, key=lambda p: str(_meta(p).get("name", "")))


def _scale_down(rs: Obj, now: datetime) -> str:
    """``, scale down in 25s`` (or ``due``) for a ReplicaSet with replicas that the controller
    will scale down (its ``rollout.dev/scale-down-at`` annotation), else ""."""
    annotations = _meta(rs).get("annotations")
    when = parse_time(annotations.get(SCALE_DOWN_AT) if isinstance(annotations, dict) else None)
    if when is None or not int(_spec(rs).get("replicas") or 0):
        return ""
    if when <= now:
        return ", scale down due"
    return f", scale down in {age(now.isoformat(), when)}"


def _tree(scene: Scene, glyph: _Glyphs) -> list[str]:
    rollout, now = scene.rollout, scene.now
    rows: list[list[str]] = [["NAME", "KIND", "STATUS", "AGE", "INFO"]]
    phase = _status(rollout).get("phase") or "Unknown"
    rows.append(
        [
            f"{glyph('rollout')} {_meta(rollout).get('name', '')}",
            "Rollout",
            f"{glyph(_PHASE_ICON.get(phase, 'unknown'))} {phase}",
            age(_meta(rollout).get("creationTimestamp"), now),
            "",
        ]
    )
    revisions = _newest_first(scene.replica_sets, scene.numbers)
    for i, rs in enumerate(revisions):
        last = i == len(revisions) - 1
        branch, under = (glyph("last"), "   ") if last else (glyph("branch"), glyph("pipe"))
        number = revision_number(rs, scene.numbers)
        label = (
            f"revision:{number}"
            if number is not None
            else f"revision {_labels(rs).get(HASH_LABEL, '?')}"
        )
        rows.append([f"{branch}{glyph('revision')} {label}", "", "", "", ""])
        icon, state = replica_set_state(rs)
        rst = rs.get("status") or {}
        info = (
            f"{role_of(rollout, rs)}{_scale_down(rs, now)}, "
            f"desired:{int(_spec(rs).get('replicas') or 0)} "
            f"ready:{int(rst.get('readyReplicas') or 0)} "
            f"available:{int(rst.get('availableReplicas') or 0)}"
        )
        rows.append(
            [
                f"{under}{glyph('last')}{glyph('replicaset')} {_meta(rs).get('name', '')}",
                "ReplicaSet",
                f"{glyph(icon)} {state}",
                age(_meta(rs).get("creationTimestamp"), now),
                info,
            ]
        )
        pods = _owned_pods(rs, scene.pods or [])
        for j, pod in enumerate(pods):
            pod_branch = glyph("last") if j == len(pods) - 1 else glyph("branch")
            icon, state = pod_state(pod)
            rows.append(
                [
                    f"{under}   {pod_branch}{glyph('pod')} {_meta(pod).get('name', '')}",
                    "Pod",
                    f"{glyph(icon)} {state}",
                    age(_meta(pod).get("creationTimestamp"), now),
                    _pod_info(pod),
                ]
            )
    return _table(rows)


# -- checks -------------------------------------------------------------------------------------


def _spec_limits(rollout: Obj) -> dict[str, tuple[str | None, str | None]]:
    """(unit, threshold) per built-in check from the spec: for measurements recorded before
    the controller stored them with each measurement."""
    limits: dict[str, tuple[str | None, str | None]] = {}
    for check in (_spec(rollout).get("analysis") or {}).get("checks") or []:
        name = str(check.get("name"))
        if isinstance(check.get("errorRate"), dict) and check["errorRate"].get("max") is not None:
            limits[name] = (None, f"max {_number(float(check['errorRate']['max']))}")
        elif isinstance(check.get("latencyP99"), dict):
            maximum = check["latencyP99"].get("maxMs")
            limits[name] = ("ms", None if maximum is None else f"max {_number(float(maximum))}")
    return limits


def check_phase(rollout: Obj, check: Obj) -> str:
    """A check's phase as shown: Running or Pending become Stopped once the rollout is aborted
    (nothing is measured for an aborted rollout; a retry starts a new run)."""
    phase = str(check.get("phase") or "Pending")
    if _status(rollout).get("abort") and phase in ("Running", "Pending"):
        return "Stopped"
    return phase


def last_value(check: Obj, fallback: tuple[str | None, str | None] = (None, None)) -> str:
    """The latest measurement's value with its unit and threshold: ``84 ms (max 250)``,
    ``0.312 (max 0.05)``; ``no value`` when it had none; ``-`` before the first."""
    measurements = check.get("measurements") or []
    if not measurements:
        return "-"
    latest = measurements[-1]
    unit = latest.get("unit") or fallback[0]
    threshold = latest.get("threshold") or fallback[1]
    value = latest.get("value")
    text = "no value" if value is None else _number(float(value))
    if unit and value is not None:
        text += f" {unit}"
    if threshold:
        text += f" ({threshold})"
    return text


def _checks(scene: Scene, glyph: _Glyphs) -> list[str]:
    rollout = scene.rollout
    run = _status(rollout).get("analysis")
    names = [str(c.get("name")) for c in (_spec(rollout).get("analysis") or {}).get("checks") or []]
    if not isinstance(run, dict):
        return [f"Checks:  none running ({', '.join(names)})"] if names else []
    run_phase = str(run.get("phase") or "Pending")
    if _status(rollout).get("abort") and run_phase in ("Running", "Pending"):
        run_phase = "Stopped"
    count = run.get("count")
    what = f"analysis x{count}" if count else "background analysis"
    lines = [f"Checks:  gate {glyph(_CHECK_ICON.get(run_phase, 'unknown'))} {run_phase} ({what})"]
    limits = _spec_limits(rollout)
    rows = [["CHECK", "STATUS", "LAST VALUE", "OK", "FAILED", "INCONCLUSIVE", "ERRORS", "MEASURED"]]
    verdicts: list[str] = []
    for check in run.get("checks") or []:
        name = str(check.get("name"))
        phase = check_phase(rollout, check)
        measured = sum(int(check.get(k) or 0) for k in ("successful", "failed", "inconclusive"))
        measurements = check.get("measurements") or []
        when = age(measurements[-1].get("at"), scene.now) + " ago" if measurements else "-"
        rows.append(
            [
                name + (" (dry run)" if check.get("dryRun") else ""),
                f"{glyph(_CHECK_ICON.get(phase, 'unknown'))} {phase}",
                last_value(check, limits.get(name, (None, None))),
                str(check.get("successful", 0)),
                str(check.get("failed", 0)),
                str(check.get("inconclusive", 0)),
                str(check.get("errors", 0)),
                f"{measured}/{count}, {when}" if count else f"{measured}, {when}",
            ]
        )
        latest = measurements[-1] if measurements else {}
        verdicts.append(
            f"{latest.get('phase')}: {latest.get('message') or '-'}"
            if latest
            else "not measured yet"
        )
    table = _table(rows, "  ")
    lines.append(table[0])
    for row, verdict in zip(table[1:], verdicts, strict=True):
        lines.append(row)
        lines.append(f"      {glyph('verdict')} {verdict}")
    return lines


# -- events -------------------------------------------------------------------------------------


def _event_time(event: Obj) -> datetime | None:
    for text in (
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        _meta(event).get("creationTimestamp"),
    ):
        when = parse_time(text)
        if when is not None:
            return when
    return None


def rollout_events(rollout: Obj, events: Iterable[Obj]) -> list[Obj]:
    """The Events about this Rollout (by kind and name, and uid when both carry one), oldest
    first."""
    meta = _meta(rollout)
    uid = meta.get("uid")
    mine = []
    for event in events:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        if involved.get("kind") != "Rollout" or involved.get("name") != meta.get("name"):
            continue
        if uid and involved.get("uid") and involved.get("uid") != uid:
            continue
        mine.append(event)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return sorted(
        mine,
        key=lambda e: (_event_time(e) or epoch, str(_meta(e).get("resourceVersion", ""))),
    )


def _events(scene: Scene, shown: int) -> list[str]:
    if scene.events is None:
        return []
    mine = rollout_events(scene.rollout, scene.events)[-shown:] if shown > 0 else []
    if not mine:
        return ["Events:  none"]
    rows = [["AGE", "TYPE", "REASON", "MESSAGE"]]
    for event in mine:
        when = _event_time(event)
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        message = " ".join(str(event.get("message") or "").split())
        rows.append(
            [
                age(when.isoformat() if when else None, scene.now),
                str(event.get("type") or ""),
                str(event.get("reason") or ""),
                message + (f" (x{count})" if count > 1 else ""),
            ]
        )
    return [f"Events (last {len(mine)}):", *_table(rows, "  ")]


# -- the screen ---------------------------------------------------------------------------------


def render(scene: Scene, *, unicode: bool = True, events: int = EVENTS_SHOWN) -> str:
    """The whole screen for ``scene``: header, tree, checks, the last ``events`` Events, and
    the watch's ``problem`` if any; no trailing newline. ASCII only when not ``unicode``."""
    glyph = _Glyphs(unicode)
    sections = [_header(scene, glyph), _tree(scene, glyph), _checks(scene, glyph)]
    sections.append(_events(scene, events))
    if scene.problem:
        sections.append([f"{glyph('warning')} {scene.problem}"])
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
