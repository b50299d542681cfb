"""``rollout get``'s screen (``rollout.view``) on Rollouts recorded from the sandbox. Pure.

``data/get_scenes.json`` holds the Rollout, its ReplicaSets and Events as a controller left
them (trimmed of what the screen does not read): a canary mid-step with gate values, the same
rollout just after ``rollout abort``, and a blue-green update paused before its switch. Pods
are written here after kwok's: the sandbox has none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollout.controller import observe
from rollout.domain.revision import HASH_LABEL
from rollout.ops import fit
from rollout.view import SCALE_DOWN_AT, UNICODE_GLYPHS, Scene, age, render

SCENES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "get_scenes.json").read_text()
)
NOW = datetime(2026, 12, 1, 10, 39, 20, tzinfo=UTC)
BLUE_GREEN_NOW = datetime(2026, 12, 1, 10, 39, 40, tzinfo=UTC)


def scene(name: str, now: datetime = NOW) -> Scene:
    recorded = copy.deepcopy(SCENES[name])
    return Scene(
        rollout=recorded["rollout"],
        replica_sets=recorded["replica_sets"],
        pods=[],
        events=recorded["events"],
        now=now,
    )


def line(screen: str, *cells: str) -> str:
    """The one line of ``screen`` holding ``cells`` in order, separated by blanks."""
    pattern = r"\s+".join(re.escape(c) for c in cells)
    found = [text for text in screen.splitlines() if re.search(pattern, text)]
    assert len(found) == 1, f"{len(found)} lines with {cells}:\n{screen}"
    return found[0]


def test_a_canary_mid_step_with_its_gate_values() -> None:
    screen = render(scene("canary_mid_step"))
    assert screen.splitlines()[:17] == [
        "Name:            reviews",
        "Namespace:       demo",
        "Status:          ◌ Progressing",
        "Message:         step 2/4: analysis x20, gate Running: error-rate 2, latency 2",
        "Strategy:        Canary",
        "  Step:          2/4 (analysis x20)",
        "  SetWeight:     20",
        "  ActualWeight:  20 (stable 80)",
        "Images:          example.com/shop/reviews:1 (stable)",
        "                 example.com/shop/reviews:2 (canary)",
        "Replicas:",
        "  Desired:       3",
        "  Current:       4",
        "  Updated:       1",
        "  Ready:         4",
        "  Available:     4",
        "",
    ]
    # the tree: newest revision first, each ReplicaSet with its role and counts
    tree = screen.split("\n\n")[1].splitlines()
    assert tree[0].split() == ["NAME", "KIND", "STATUS", "AGE", "INFO"]
    assert tree[1].split() == ["⟳", "reviews", "Rollout", "◌", "Progressing", "30s"]
    assert tree[2] == "├──# revision xgb5w8x7lw"  # no rollout.dev/revision: the hash
    assert tree[3].split() == [
        "│", "└──⧉", "reviews-xgb5w8x7lw", "ReplicaSet", "✔", "Healthy", "20s",
        "canary,", "desired:1", "ready:1", "available:1",
    ]  # fmt: skip
    assert tree[4] == "└──# revision hb5lsl2sds"
    assert "stable, desired:3 ready:3 available:3" in tree[5]
    # the checks: last value with unit and threshold, counts, the last verdict's reason
    assert line(screen, "Checks:", "gate ◌ Running (analysis x20)")
    assert line(screen, "error-rate", "◌ Running", "0 (max 0.05)", "2", "0", "0", "0", "2/20,")
    assert line(screen, "latency", "◌ Running", "109 ms (max 250)", "2", "0", "0", "0", "2/20,")
    assert "9s ago" in line(screen, "latency", "◌ Running")
    assert line(screen, "└ Successful: p99 109.0 ms (maxMs 250.0)")
    # the Events, oldest first, with their age
    assert screen.endswith("  19s  Normal  StepCompleted   step 1/4 done: setWeight 20%"), (
        screen.splitlines()[-1]
    )
    assert line(screen, "Events (last 3):")


def test_a_pause_shows_its_reason_and_the_check_that_holds_it_with_the_reason() -> None:
    paused = scene("canary_mid_step")
    status = paused.rollout["status"]
    status["phase"] = "Paused"
    status["pauseConditions"] = [{"reason": "PausedByUser", "startTime": "2026-12-01T10:39:15Z"}]
    latest = status["analysis"]["checks"][0]["measurements"][-1]
    latest.update(
        phase="Inconclusive",
        value=None,
        message="the canary served 16 requests in 5s, fewer than minRequests 20: not enough "
        "traffic to judge",
    )
    status["analysis"]["checks"][0].update(successful=1, inconclusive=1)
    screen = render(paused)
    assert line(screen, "Status:", "॥ Paused (PausedByUser)")
    assert line(screen, "⟳ reviews", "Rollout", "॥ Paused")
    assert line(screen, "error-rate", "◌ Running", "no value (max 0.05)", "1", "0", "1", "0")
    assert line(
        screen, "└ Inconclusive: the canary served 16 requests in 5s, fewer than minRequests 20"
    )


def test_after_an_abort_no_check_is_shown_running() -> None:
    aborted = scene("degraded_after_abort")
    run = aborted.rollout["status"]["analysis"]
    assert run["phase"] == "Running"  # as the controller left it: nothing measures it any more
    assert {c["phase"] for c in run["checks"]} == {"Running"}
    screen = render(aborted)
    assert not re.search(r"\bRunning\b", screen), screen
    assert line(screen, "Status:", "✖ Degraded (RolloutAborted)")
    assert line(screen, "Step:", "2/4 (analysis x20, aborted)")
    assert line(screen, "SetWeight:", "0")
    assert line(screen, "ActualWeight:", "0 (stable 100)")
    assert line(screen, "Checks:", "gate • Stopped (analysis x20)")
    assert line(screen, "error-rate", "• Stopped", "0 (max 0.05)")
    assert line(screen, "latency", "• Stopped", "109 ms (max 250)")
    assert line(screen, "9s", "Warning", "RolloutAborted", "rollback to stable: aborted by")


def test_a_gate_failure_names_its_reason_and_keeps_the_verdicts() -> None:
    failed = scene("degraded_after_abort")
    status = failed.rollout["status"]
    status["abortReason"] = "AnalysisFailed"
    run = status["analysis"]
    run["phase"] = "Failed"
    error_rate = run["checks"][0]
    error_rate.update(phase="Failed", failed=1)
    error_rate["measurements"][-1].update(
        phase="Failed", value=0.312, message="error rate 0.3120 above max 0.05"
    )
    screen = render(failed)
    assert line(screen, "Status:", "✖ Degraded (AnalysisFailed)")
    assert line(screen, "Checks:", "gate ✖ Failed")
    assert line(screen, "error-rate", "✖ Failed", "0.312 (max 0.05)", "2", "1", "0", "0")
    assert line(screen, "└ Failed: error rate 0.3120 above max 0.05")
    assert line(screen, "latency", "• Stopped", "109 ms (max 250)")


def test_blue_green_speaks_of_active_and_preview() -> None:
    screen = render(scene("blue_green_paused", BLUE_GREEN_NOW))
    assert line(screen, "Status:", "॥ Paused (BlueGreenPause)")
    assert line(screen, "Strategy:", "BlueGreen")
    assert line(screen, "Step:", "3/5 (pause until promoted)")
    assert line(screen, "Switched:", "no: live traffic goes to active, preview has 0%")
    assert "SetWeight" not in screen
    assert line(screen, "Images:", "example.com/shop/reviews:1 (active)")
    assert line(screen, "example.com/shop/reviews:2 (preview)")
    assert line(screen, "reviews-hqm448qgvm", "ReplicaSet", "✔ Healthy", "8s", "preview,")
    assert line(screen, "reviews-hb5lsl2sds", "ReplicaSet", "✔ Healthy", "17s", "active,")
    assert line(screen, "Checks:", "gate ✔ Successful (analysis x1)")
    assert line(screen, "latency", "✔ Successful", "83.17 ms (max 250)", "1", "0", "0", "0")
    # once switched, the new revision is the active one
    switched = scene("blue_green_paused", BLUE_GREEN_NOW)
    switched.rollout["status"]["weights"] = {"stable": 0, "canary": 100, "mirror": 0}
    screen = render(switched)
    assert line(screen, "Switched:", "yes: the new revision is active (100% of live traffic)")
    assert line(screen, "Images:", "example.com/shop/reviews:2 (active)")
    assert line(screen, "reviews-hb5lsl2sds", "ReplicaSet", "✔ Healthy", "17s", "old,")


def pod(rs: dict[str, Any], suffix: str, **status: Any) -> dict[str, Any]:
    """A Pod of ``rs`` as kwok reports one."""
    return {
        "metadata": {
            "name": f"{rs['metadata']['name']}-{suffix}",
            "creationTimestamp": "2026-12-01T10:39:05Z",
            "labels": rs["spec"]["template"]["metadata"]["labels"],
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"]}
            ],
        },
        "spec": {"containers": rs["spec"]["template"]["spec"]["containers"]},
        "status": status,
    }


RUNNING = {
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [{"name": "reviews", "ready": True, "restartCount": 0}],
}


def test_revisions_carry_their_number_and_replica_sets_their_pods() -> None:
    recorded = scene("canary_mid_step")
    canary, stable = recorded.replica_sets
    canary["metadata"]["annotations"] = {"rollout.dev/revision": "2"}
    stable["metadata"]["annotations"] = {"rollout.dev/revision": "1"}
    crashing = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {
                "name": "reviews",
                "ready": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ],
    }
    pods = [
        pod(canary, "x7k2p", **crashing),
        pod(stable, "a1b2c", **RUNNING),
        pod(stable, "d3e4f", **RUNNING),
        pod(stable, "g5h6i", phase="Pending"),
        {**pod(stable, "zzzzz"), "metadata": {"name": "someone-elses", "ownerReferences": []}},
    ]
    screen = render(Scene(recorded.rollout, [stable, canary], pods, recorded.events, NOW))
    tree = screen.split("\n\n")[1].splitlines()
    assert [row.split()[0] for row in tree[1:]] == ["⟳", "├──#", "│", "│", "└──#", "└──⧉"] + [
        "├──□",
        "├──□",
        "└──□",
    ]
    assert tree[2] == "├──# revision:2"
    assert tree[4].split() == [
        "│", "└──□", "reviews-xgb5w8x7lw-x7k2p", "Pod", "✖", "CrashLoopBackOff", "15s",
        "ready:0/1", "restarts:4",
    ]  # fmt: skip
    assert tree[5] == "└──# revision:1"
    assert tree[7].split()[1:] == [
        "reviews-hb5lsl2sds-a1b2c", "Pod", "✔", "Running", "15s", "ready:1/1", "restarts:0",
    ]  # fmt: skip
    assert tree[9].split()[2:5] == ["Pod", "◌", "Pending"]
    assert "someone-elses" not in screen


def test_ascii_when_the_output_cannot_encode_the_icons() -> None:
    screen = render(scene("degraded_after_abort"), unicode=False)
    screen.encode("ascii")
    assert line(screen, "Status:", "XX Degraded (RolloutAborted)")
    assert line(screen, "@ reviews", "Rollout", "XX Degraded")
    assert "|  `--+ reviews-xgb5w8x7lw  ReplicaSet  OK Healthy" in screen
    assert line(screen, "error-rate", "-- Stopped", "0 (max 0.05)")
    assert line(screen, "` Successful: error rate 0.0000 (max 0.05)")
    with pytest.raises(UnicodeEncodeError):
        UNICODE_GLYPHS.encode("ascii")


def test_what_cannot_be_read_is_left_out_and_a_watch_problem_is_said() -> None:
    recorded = scene("canary_mid_step")
    screen = render(
        Scene(recorded.rollout, [], None, None, NOW, problem="watch interrupted, retrying: x")
    )
    assert "Events" not in screen and "Pod" not in screen
    assert line(screen, "Images:", "example.com/shop/reviews:2 (not deployed)")
    assert screen.endswith("⚠ watch interrupted, retrying: x")
    fresh = copy.deepcopy(recorded.rollout)
    fresh["status"] = {}
    fresh["metadata"]["generation"] = 1
    screen = render(Scene(fresh, [], [], [], NOW))
    assert line(screen, "Status:", "? Unknown; generation 1 not yet seen by the controller")
    assert line(screen, "Step:", "-")
    assert line(screen, "Checks:", "none running (error-rate, latency)")
    assert line(screen, "Events:", "none")


def test_only_the_last_events_of_this_rollout_are_shown() -> None:
    recorded = scene("degraded_after_abort")
    events = list(recorded.events or [])
    other = copy.deepcopy(events[-1])
    other["involvedObject"]["name"] = "ratings"
    older_life = copy.deepcopy(events[-1])
    older_life["involvedObject"]["uid"] = "a-deleted-rollout-of-the-same-name"
    repeated = copy.deepcopy(next(e for e in events if e["reason"] == "Deployed"))
    repeated.update(count=3, lastTimestamp="2026-12-01T10:39:19Z", message="again\n  and again")
    shown = Scene(recorded.rollout, [], [], [*events, other, older_life, repeated], NOW)
    screen = render(shown, events=2)
    assert screen.split("Events (last 2):\n")[1].splitlines() == [
        "  AGE  TYPE     REASON          MESSAGE",
        "  9s   Warning  RolloutAborted  rollback to stable: aborted by the operator",
        "  1s   Normal   Deployed        again and again (x3)",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (119, "119s"),
        (130, "2m10s"),
        (600, "10m"),
        (3 * 3600 + 5, "3h"),
        (86400 * 3, "3d"),
    ],
)
def test_ages_are_kubectl_style(seconds: int, shown: str) -> None:
    then = datetime.fromtimestamp(NOW.timestamp() - seconds, tz=UTC)
    assert age(then.strftime("%Y-%m-%dT%H:%M:%SZ"), NOW) == shown
    assert age(None, NOW) == age("garbage", NOW) == "-"


def test_a_frame_taller_or_wider_than_the_terminal_is_cut_to_fit() -> None:
    text = "\n".join(f"line {i}" for i in range(10))
    assert fit(text, 80, 20) == text
    assert fit(text, 80, 5).splitlines() == [
        "line 0",
        "line 1",
        "line 2",
        "line 3",
        "... 6 more line(s): make the terminal taller",
    ]
    # a line twice the width takes two rows
    wide = "x" * 30 + "\nnext\nlast"
    assert fit(wide, 20, 4) == wide
    assert fit(wide, 20, 3).splitlines()[-1].startswith("... 2 more")


def test_a_spec_the_view_cannot_read_still_shows_the_status() -> None:
    """Steps from a spec this CLI does not parse (a newer field) are not guessed."""
    newer = scene("canary_mid_step")
    newer.rollout["spec"]["strategy"]["canary"]["steps"][0]["setCanaryScale"] = {"replicas": 1}
    screen = render(newer)
    assert line(screen, "Step:", "2/4").split() == ["Step:", "2/4"]
    assert line(screen, "SetWeight:", "-")
    assert line(screen, "ActualWeight:", "20 (stable 80)")


@pytest.mark.parametrize(
    "pod_spec",
    [
        {"containers": "x"},
        {"containers": ["x", {"name": "a", "image": "i:1"}], "initContainers": {"a": 1}},
        {"containers": [{"name": "a", "image": ["i:1"]}, None, 3]},
    ],
)
def test_a_pod_template_the_api_keeps_as_written_still_renders(pod_spec: dict[str, Any]) -> None:
    """``spec.template.spec`` is kept as written (the CRD preserves unknown fields there): a
    Rollout not deployed yet with containers that are not objects shows the images it can
    read, never a traceback."""
    unseen = scene("canary_mid_step")
    unseen.rollout["spec"]["template"]["spec"] = pod_spec
    unseen.rollout.pop("status")
    screen = render(dataclasses.replace(unseen, replica_sets=[]))
    assert line(screen, "Status:", "? Unknown")
    images = [row for row in screen.splitlines() if "(not deployed)" in row]
    assert all(re.search(r"\S+ \(not deployed\)$", row) for row in images), screen


def test_a_header_route_in_force_is_shown_until_the_abort() -> None:
    """After a ``setHeaderRoute`` step, requests matching it go to the canary whatever the
    weights: the screen says which, as long as the route is in place."""
    routed = scene("canary_mid_step")
    steps = routed.rollout["spec"]["strategy"]["canary"]["steps"]
    steps.insert(
        0,
        {
            "setHeaderRoute": {
                "name": "testers",
                "match": [
                    {"headers": {"x-canary": {"exact": "always"}}},
                    {"headers": {"x-user": {"prefix": "qa-"}, "x-env": {"regex": "st.*"}}},
                ],
            }
        },
    )
    routed.rollout["status"].update(currentStepIndex=2, stepCount=5, step="3/5")
    screen = render(routed)
    assert line(screen, "Step:", "3/5 (analysis x20)")
    assert line(screen, "SetWeight:", "20")
    assert line(
        screen,
        "HeaderRoute:",
        'testers: x-canary exact "always" or x-user prefix "qa-", x-env regex "st.*"',
    )
    routed.rollout["status"]["abort"] = True
    assert "HeaderRoute:" not in render(routed)


def test_a_replica_set_waiting_to_be_scaled_down_says_when() -> None:
    """As ``kubectl argo rollouts get`` shows ``delay:25s``: a ReplicaSet the controller will
    scale down (annotation ``rollout.dev/scale-down-at``) says in how long, or that it is due."""
    waiting = scene("canary_mid_step")
    old = copy.deepcopy(waiting.replica_sets[0])
    old["metadata"].update(name="reviews-oldrevisio", uid="old-uid")
    old["metadata"]["labels"][HASH_LABEL] = "oldrevisio"
    old["metadata"]["annotations"] = {
        "rollout.dev/revision": "1",
        SCALE_DOWN_AT: "2026-12-01T10:39:45Z",
    }
    old["spec"]["replicas"] = 2
    screen = render(dataclasses.replace(waiting, replica_sets=[*waiting.replica_sets, old]))
    assert "reviews-oldrevisio" in line(screen, "old, scale down in 25s, desired:2")
    later = render(
        dataclasses.replace(
            waiting,
            replica_sets=[*waiting.replica_sets, old],
            now=datetime(2026, 12, 1, 10, 40, tzinfo=UTC),
        )
    )
    assert "reviews-oldrevisio" in line(later, "old, scale down due, desired:2")
    old["spec"]["replicas"] = 0  # scaled down: nothing to say
    done = render(dataclasses.replace(waiting, replica_sets=[*waiting.replica_sets, old]))
    assert "reviews-oldrevisio" in line(done, "old, desired:0")
    assert SCALE_DOWN_AT == observe.SCALE_DOWN_AT  # the controller's annotation
