"""``rollout demo``'s timeline and plot by version, from synthetic statuses (no cluster).

The statuses go through the demo's own ``VersionTracker`` (what ``_watch`` does each second),
so the JSON fields and the figure are those a real run produces; the figure is checked through
its matplotlib artists: line labels and colours, y limits, annotation and legend texts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rollout.demo import SCENARIOS, Obj, Result, Sample, VersionTracker, step_count
from rollout.demo_plot import figure, plot

V1, V2 = "hv1aaaaaaa", "hv2bbbbbbb"
STEP = re.compile(r"step (\d+)/(\d+)")


def status(phase: str, index: int | None, canary: int, stable: str = V1, mirror: float = 0) -> Obj:
    """A Rollout status as the controller writes it (``stableRevision``, ``weights``, ...)."""
    return {
        "phase": phase,
        "currentStepIndex": index,
        "stableRevision": stable,
        "canaryRevision": V2,
        "weights": {"stable": 100 - canary, "canary": canary, "mirror": mirror},
    }


def run(name: str, statuses: list[Obj], failed_at: float | None = None) -> Result:
    """The demo's timeline for ``statuses``, one per second; a failed gate measurement at
    ``failed_at``; the outcome the scenario expects."""
    scenario = SCENARIOS[name]
    thresholds = {"errorRate": 0.05, "p99Ms": 250.0}
    result = Result(name, scenario.expected, float(len(statuses)), scenario.expected, thresholds)
    tracker = VersionTracker(scenario, result, V1)
    bad = scenario.v2 != {}
    last: tuple[Any, Any] | None = None
    for second, current in enumerate(statuses):
        weights = current["weights"]
        sample = Sample(
            t=float(second),
            phase=current["phase"],
            step=current["currentStepIndex"],
            canaryWeight=weights["canary"],
            stableWeight=weights["stable"],
            mirrorPercent=weights["mirror"],
            canaryErrorRate=None if second == 0 else (0.3 if bad else 0.0),
            canaryP99Ms=None if second == 0 else 90.0,
            stableErrorRate=0.0,
            stableP99Ms=80.0,
        )
        result.timeline.append(sample)
        tracker.record(sample, current, V2)
        if (sample.phase, sample.step) != last:  # as _watch does: a step change, no kind
            result.events.append({"t": sample.t, "what": f"{sample.phase} {sample.stepLabel}"})
            last = (sample.phase, sample.step)
        if failed_at == sample.t:
            result.events.append({"t": sample.t, "what": "gate failed", "kind": "gate-failed"})
    return result


def good_canary() -> Result:
    """Six steps (20%, analysis, 50%, analysis, 80%, pause), then the promotion: index 6 of 6
    while promoting, then Healthy with v2 stable."""
    return run(
        "good-canary",
        [
            status("Progressing", 0, 0),
            status("Progressing", 1, 20),
            status("Progressing", 1, 20),
            status("Progressing", 3, 50),
            status("Paused", 5, 80),
            status("Progressing", 6, 80),
            status("Progressing", 6, 100),
            status("Healthy", 6, 0, stable=V2),
            status("Healthy", 6, 0, stable=V2),
        ],
    )


def bad_canary() -> Result:
    return run(
        "bad-canary",
        [
            status("Progressing", 0, 0),
            status("Progressing", 1, 20),
            status("Progressing", 1, 20),
            status("Degraded", 1, 0),
            status("Degraded", 1, 0),
        ],
        failed_at=3.0,
    )


def blue_green() -> Result:
    """Preview, pre-promotion analysis, pause, switch, post-promotion analysis (5 steps)."""
    return run(
        "blue-green",
        [
            status("Progressing", 0, 0),
            status("Progressing", 1, 0),
            status("Paused", 2, 0),
            status("Progressing", 3, 0),
            status("Progressing", 4, 100),
            status("Progressing", 4, 100),
            status("Healthy", 5, 0, stable=V2),
            status("Healthy", 5, 0, stable=V2),
        ],
    )


def bad_blue_green() -> Result:
    return run(
        "bad-blue-green",
        [
            status("Progressing", 0, 0),
            status("Progressing", 3, 100),
            status("Progressing", 3, 100),
            status("Degraded", 3, 0),
            status("Degraded", 3, 0),
        ],
        failed_at=3.0,
    )


def version_lines(axis: Any) -> dict[str, str]:
    """{version: colour} of the lines labelled by version (``v1 ...``, ``v2 ...``) in ``axis``;
    fails when a version has lines of two colours there."""
    colours: dict[str, str] = {}
    for line in axis.get_lines():
        label = str(line.get_label())
        if label[:2] in ("v1", "v2"):
            assert colours.setdefault(label[:2], line.get_color()) == line.get_color(), label
    return colours


def texts(fig: Any) -> list[str]:
    return [str(text.get_text()) for axis in fig.axes for text in axis.texts]


def legend(axis: Any) -> list[str]:
    return [str(text.get_text()) for text in axis.get_legend().get_texts()]


def marks(axis: Any, t: float) -> set[tuple[str, str]]:
    """(colour, line style) of the vertical lines at ``t`` in ``axis``, but the step lines."""
    return {
        (str(line.get_color()), str(line.get_linestyle()))
        for line in axis.get_lines()
        if list(line.get_xdata()) == [t, t] and line.get_color() != "0.7"
    }


def event_t(result: Result, kind: str) -> float:
    times = [e["t"] for e in result.events if e.get("kind") == kind]
    assert len(times) == 1, result.events
    return float(times[0])


# -- the plot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [good_canary, bad_canary, blue_green, bad_blue_green])
def test_each_version_has_one_colour_in_every_panel(make: Any) -> None:
    fig = figure(make())
    assert len(fig.axes) == 3
    colours = [version_lines(axis) for axis in fig.axes]
    assert all(set(c) == {"v1", "v2"} for c in colours), colours
    assert colours[0] == colours[1] == colours[2]
    assert colours[0]["v1"] != colours[0]["v2"]
    # nothing is drawn by role: no line is labelled "stable ..." or "canary ..." on its own
    for axis in fig.axes:
        for line in axis.get_lines():
            assert not str(line.get_label()).startswith(("stable", "canary")), line.get_label()


@pytest.mark.parametrize("make", [good_canary, bad_canary, blue_green, bad_blue_green])
def test_no_axis_goes_below_zero(make: Any) -> None:
    result = make()
    fig = figure(result)
    for axis in fig.axes:
        assert axis.get_ylim()[0] == 0, (axis.get_ylabel(), axis.get_ylim())
    top, errors, latency = fig.axes
    assert top.get_ylim()[1] >= 100
    # every measured rate (a failing canary's 30% errors) and the gate's line stay in view
    rates = [v["errorRate"] for s in result.timeline for v in s.versions if v["errorRate"]]
    assert errors.get_ylim()[1] >= max([0.05, *rates])
    assert latency.get_ylim()[1] >= 250


def test_the_weights_are_drawn_by_version_across_the_promotion() -> None:
    fig = figure(good_canary())
    weights = {
        str(line.get_label())[:2]: list(line.get_ydata())
        for line in fig.axes[0].get_lines()
        if str(line.get_label())[:2] in ("v1", "v2")
    }
    # v2 climbs to 100 and stays there: no drop to 0 when it becomes stable
    assert weights["v2"] == [0, 20, 20, 50, 80, 80, 100, 100, 100]
    assert weights["v1"] == [100, 80, 80, 50, 20, 20, 0, 0, 0]


def test_promotion_and_rollback_are_marked_differently() -> None:
    promoted, rolled_back = good_canary(), bad_canary()
    good, bad = figure(promoted), figure(rolled_back)
    assert "v2 becomes stable" in texts(good)
    assert "rolled back to v1" not in texts(good)
    assert "rolled back to v1" in texts(bad)
    assert "v2 becomes stable" not in texts(bad)
    assert "gate failed" in texts(bad)
    promotion = [marks(axis, event_t(promoted, "promotion")) for axis in good.axes]
    rollback = [marks(axis, event_t(rolled_back, "rollback")) for axis in bad.axes]
    assert promotion[0] and promotion[0] == promotion[1] == promotion[2]  # across all panels
    assert rollback[0] and rollback[0] == rollback[1] == rollback[2]
    assert not promotion[0] & rollback[0], (promotion, rollback)
    assert len({style for _, style in promotion[0] | rollback[0]}) >= 2


def test_blue_green_speaks_of_active_and_preview() -> None:
    fig = figure(blue_green())
    top = fig.axes[0]
    names = [name for axis in fig.axes for name in legend(axis)]
    assert legend(top)[0].startswith("v1 (active): example.com/shop/reviews:1")
    assert legend(top)[1].startswith("v2 (preview): example.com/shop/reviews:2")
    assert not [name for name in names if "canary" in name], names
    assert top.get_ylabel() == "live traffic %"
    assert "active/preview" in fig.texts[0].get_text()  # the title
    assert "v2 becomes active" in texts(fig) and "v2 becomes stable" in texts(fig)


def test_a_canary_legend_names_stable_and_canary_with_image_and_revision() -> None:
    top = figure(good_canary()).axes[0]
    assert legend(top) == [
        f"v1 (stable): example.com/shop/reviews:1\nrevision {V1}",
        f"v2 (canary): example.com/shop/reviews:2\nrevision {V2}",
    ]


@pytest.mark.parametrize(
    ("make", "count"), [(good_canary, 6), (bad_canary, 6), (blue_green, 5), (bad_blue_green, 4)]
)
def test_step_labels_never_pass_the_number_of_steps(make: Any, count: int) -> None:
    fig = figure(make())
    labels = [STEP.search(text) for text in texts(fig)]
    numbers = [(int(m[1]), int(m[2])) for m in labels if m]
    assert numbers, texts(fig)
    assert all(n == count and 1 <= i <= n for i, n in numbers), numbers


def test_a_six_step_plot_ends_at_step_6_of_6() -> None:
    shown = texts(figure(good_canary()))
    assert "step 6/6 promoting" in shown and "step 6/6 Healthy" in shown
    assert not any("step 7" in text for text in shown)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "out" / "demo.png"
    plot(bad_canary(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the --json timeline -----------------------------------------------------------------------


def test_the_json_names_each_version_with_its_image_and_revision() -> None:
    data = json.loads(json.dumps(good_canary().as_json()))
    assert data["strategy"] == "canary" and data["stepCount"] == 6
    assert data["versions"] == [
        {"version": "v1", "image": "example.com/shop/reviews:1", "revision": V1},
        {"version": "v2", "image": "example.com/shop/reviews:2", "revision": V2},
    ]
    for sample in data["timeline"]:
        assert [(v["version"], v["image"], v["revision"]) for v in sample["versions"]] == [
            ("v1", "example.com/shop/reviews:1", V1),
            ("v2", "example.com/shop/reviews:2", V2),
        ]
        assert sum(v["weight"] for v in sample["versions"]) == 100
    first, last = data["timeline"][0], data["timeline"][-1]
    assert [v["roles"] for v in first["versions"]] == [["stable"], ["canary"]]
    assert [v["roles"] for v in last["versions"]] == [[], ["stable"]]
    assert [v["weight"] for v in last["versions"]] == [0, 100]
    assert last["canaryWeight"] == 0  # the role-based field drops at the promotion


def test_the_json_step_labels_use_the_one_numbering() -> None:
    data = good_canary().as_json()
    assert [s["stepLabel"] for s in data["timeline"]] == [
        "1/6", "2/6", "2/6", "4/6", "6/6", "6/6", "6/6", "6/6", "6/6"
    ]  # fmt: skip


def test_the_json_marks_promotion_and_rollback_as_events() -> None:
    promoted = good_canary().as_json()["events"]
    assert [(e["t"], e["what"]) for e in promoted if e["kind"] == "promotion"] == [
        (7.0, "v2 becomes stable")
    ]
    assert not [e for e in promoted if e["kind"] in ("rollback", "switch")]
    assert [e["t"] for e in promoted if e["kind"] == "step"] == [0.0, 1.0, 3.0, 4.0, 5.0, 7.0]
    assert {e["kind"] for e in promoted} == {"step", "promotion"}
    rolled_back = bad_canary().as_json()
    kinds = [e["kind"] for e in rolled_back["events"] if e["t"] == 3.0]
    assert kinds == ["step", "gate-failed", "rollback"]  # the cause first
    assert [e["what"] for e in rolled_back["events"] if e["kind"] == "rollback"] == [
        "rolled back to v1"
    ]
    last = rolled_back["timeline"][-1]["versions"]
    assert [(v["roles"], v["weight"]) for v in last] == [(["stable"], 100), (["canary"], 0)]


def test_the_json_gives_blue_green_roles_as_active_and_preview() -> None:
    data = blue_green().as_json()
    roles = [[v["roles"] for v in s["versions"]] for s in data["timeline"]]
    assert roles[0] == [["active", "stable"], ["preview"]]
    assert roles[4] == [["stable"], ["active"]]  # switched; v1 is still what a rollback restores
    assert roles[-1] == [[], ["active", "stable"]]
    assert [e["kind"] for e in data["events"] if e["kind"] != "step"] == ["switch", "promotion"]
    assert data["strategy"] == "blueGreen" and data["stepCount"] == 5


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("good-canary", 6),
        ("blue-green", 5),
        ("bad-blue-green", 4),
        ("mirror", 3),
        ("header-route", 4),
    ],
)
def test_step_count_is_the_controllers(name: str, count: int) -> None:
    assert step_count(SCENARIOS[name]) == count


def header_route() -> Result:
    """Header route, analysis, 50%, analysis (4 steps): the last step (index 3, "4/4") and
    the promotion after it (index 4, also "4/4") are both Progressing."""
    return run(
        "header-route",
        [
            status("Progressing", 0, 0),
            status("Progressing", 1, 0),
            status("Progressing", 3, 50),
            status("Progressing", 4, 50),
            status("Healthy", 4, 0, stable=V2),
        ],
    )


def test_the_promotion_after_the_last_step_is_its_own_step_event_and_plot_label() -> None:
    from rollout.demo import step_change

    result = header_route()
    last, promoting = result.timeline[2], result.timeline[3]
    assert step_change(last, result.stepCount) == "Progressing step 4/4"
    assert step_change(promoting, result.stepCount) == "Progressing step 4/4 done: promoting"
    shown = texts(figure(result))
    assert "step 4/4" in shown and "step 4/4 promoting" in shown and "step 4/4 Healthy" in shown


def test_the_printed_lines_give_traffic_by_version_and_blue_green_as_active_preview() -> None:
    from rollout.demo import weights_text

    canary = good_canary().timeline
    assert weights_text(canary[1]) == "traffic v1/v2 80/20"
    assert weights_text(canary[-1]) == "traffic v1/v2 0/100"  # promoted: not "stable 100"
    bg = blue_green().timeline
    assert weights_text(bg[0], True) == "live traffic v1/v2 100/0 (active v1, preview v2)"
    assert weights_text(bg[4], True) == "live traffic v1/v2 0/100 (active v2)"
    assert weights_text(bg[-1], True) == "live traffic v1/v2 0/100 (active v2)"
    assert not any("canary" in weights_text(s, True) for s in bg)
