"""``rollout demo --plot``: weights and gate metrics over time, as a PNG (matplotlib, headless).

Drawn by version, not by role: v1 and v2 keep one colour each in every panel, because "stable"
and "canary" swap meaning at the promotion. The moments a person looks for are vertical lines
of their own style across all panels: the blue-green switch (v2 becomes active), the promotion
(v2 becomes stable), the rollback (back to v1) and each failed gate measurement. Step labels
use the one numbering (``rollout.domain.steps.step_number``): a 6-step rollout never shows
"step 7". Blue-green is labelled in its own terms: active and preview.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rollout.demo import Result, promoting

# One colour per version, the same in every panel.
VERSION_COLOURS = {"v1": "tab:blue", "v2": "tab:orange"}
GATE_COLOUR = "black"
# kind -> (colour, line style, line width): the marks differ in colour and in style, so they
# stay apart in grey print and for colour-blind readers.
MARKS = {
    "gate-failed": ("tab:red", "-", 1.0),
    "switch": ("tab:green", ":", 1.8),
    "promotion": ("tab:green", "--", 1.8),
    "rollback": ("tab:purple", "-.", 1.8),
}
STEP_COLOUR = "0.7"
STRATEGY_NAMES = {"canary": "canary", "blueGreen": "blue-green, active/preview", "mirror": "mirror"}
# Version lines are drawn above the axes' frame (zorder 2.5) and unclipped, so that a weight of
# 0 or 100 and an error rate of 0 stay visible on the frame.
LINE = {"zorder": 3, "clip_on": False}
# Where a mark's text sits in the top panel (fraction of its height), so that marks at the same
# second do not overwrite each other.
MARK_HEIGHT = {"switch": 0.28, "promotion": 0.62, "rollback": 0.62}
# The role a version is named by in the legend, first match: blue-green's terms first.
ROLE_ORDER = ("active", "preview", "stable", "canary")


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _first_role(result: Result, version: str) -> str:
    """The role ``version`` had when the timeline starts (the first sample that gives it one)."""
    for sample in result.timeline:
        for entry in sample.versions:
            if entry["version"] == version:
                named = [r for r in ROLE_ORDER if r in entry["roles"]]
                if named:
                    return named[0]
    return "new"


def _series(result: Result, version: str, key: str) -> list[float]:
    values = []
    for sample in result.timeline:
        entry = next((e for e in sample.versions if e["version"] == version), None)
        values.append(_value(entry[key]) if entry is not None else math.nan)
    return values


def _label(identity: dict[str, Any], role: str) -> str:
    revision = identity.get("revision")
    return f"{identity['version']} ({role}): {identity['image']}" + (
        f"\nrevision {revision}" if revision else ""
    )


def _top(values: list[float], gate: float, headroom: float) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max([gate, *finite]) * headroom


def figure(result: Result) -> Any:
    """The demo's timeline drawn as a matplotlib ``Figure`` with three panels sharing the time
    axis (seconds since the update to v2): traffic % per version (weight, and mirrored share
    dashed), 5xx share per version and p99 in ms per version, each with the gate's maximum.

    ``result`` comes from ``rollout.demo.run_demo`` (or is built by a test): its samples'
    ``versions`` entries give each version's weight, metrics and roles; its events of kind
    ``switch``, ``promotion``, ``rollback`` and ``gate-failed`` become vertical lines (styles in
    ``MARKS``), annotated with their ``what``. Every y axis starts at 0. A plain ``Figure``,
    not pyplot's: no global state, no display, nothing to close.
    """
    from matplotlib.figure import Figure

    from rollout.domain.steps import step_number

    blue_green = result.strategy == "blueGreen"
    t = [s.t for s in result.timeline]
    fig = Figure(figsize=(11, 7.5))
    top, errors, latency = fig.subplots(3, 1, sharex=True)
    fig.suptitle(
        f"rollout demo --scenario {result.scenario} "
        f"({STRATEGY_NAMES.get(result.strategy, result.strategy)}): {result.outcome} "
        f"after {result.durationSeconds:.0f}s"
    )
    error_values: list[float] = []
    p99_values: list[float] = []
    for identity in result.versions:
        version = identity["version"]
        colour = VERSION_COLOURS.get(version, "tab:gray")
        role = _first_role(result, version)
        top.step(
            t,
            _series(result, version, "weight"),
            where="post",
            color=colour,
            lw=2,
            label=_label(identity, role),
            **LINE,
        )
        mirrored = _series(result, version, "mirrorPercent")
        if any(v > 0 for v in mirrored if not math.isnan(v)):
            top.step(
                t,
                mirrored,
                where="post",
                color=colour,
                ls="--",
                label=f"{version} mirrored copy %",
                **LINE,
            )
        error = _series(result, version, "errorRate")
        p99 = _series(result, version, "p99Ms")
        error_values += error
        p99_values += p99
        errors.plot(t, error, color=colour, marker=".", label=f"{version} ({role})", **LINE)
        latency.plot(t, p99, color=colour, marker=".", label=f"{version} ({role})", **LINE)
    gate_error, gate_p99 = result.thresholds["errorRate"], result.thresholds["p99Ms"]
    errors.axhline(gate_error, color=GATE_COLOUR, ls="--", lw=1, label=f"gate max {gate_error:g}")
    latency.axhline(gate_p99, color=GATE_COLOUR, ls="--", lw=1, label=f"gate max {gate_p99:g} ms")
    top.set_ylabel("live traffic %" if blue_green else "traffic weight %")
    top.set_ylim(0, 105)
    errors.set_ylabel("5xx share")
    errors.set_ylim(0, _top(error_values, gate_error, 1.15))
    latency.set_ylabel("p99 (ms)")
    latency.set_ylim(0, _top(p99_values, gate_p99, 1.15))
    latency.set_xlabel("seconds since the update to v2")
    if t:
        latency.set_xlim(0, max(t[-1], 1.0))

    _steps(result, top, (top, errors, latency), step_number)
    end = max(t[-1], 1.0) if t else 1.0
    for event in result.events:
        mark = MARKS.get(event.get("kind", ""))
        if mark is None:
            continue
        colour, style, width = mark
        for axis in (top, errors, latency):
            axis.axvline(event["t"], color=colour, ls=style, lw=width)
        # A failed measurement is about the metrics: its text goes on the 5xx panel; the
        # outcome's marks on the traffic panel, where the weights move.
        axis = errors if event["kind"] == "gate-failed" else top
        height = 0.9 if event["kind"] == "gate-failed" else MARK_HEIGHT[event["kind"]]
        left = event["t"] > 0.7 * end
        axis.annotate(
            event["what"],
            (event["t"], height),
            xycoords=axis.get_xaxis_transform(),
            xytext=(-4 if left else 4, 0),
            textcoords="offset points",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
            color=colour,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "lw": 0.8},
        )
    for axis in (top, errors, latency):
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _steps(result: Result, top: Any, axes: tuple[Any, ...], step_number: Any) -> None:
    """A thin dotted line where the step or the phase changes, labelled above the top panel
    with ``step i/n`` (the one numbering) and the phase unless it is Progressing ("promoting"
    once every step is done)."""
    last: tuple[Any, ...] | None = None
    for sample in result.timeline:
        label = sample.stepLabel
        if label == "-":
            label = step_number(sample.step, result.stepCount)
        done = promoting(sample, result.stepCount)
        # The last step and the promotion after it share the label n/n: "promoting" tells
        # them apart, so the promotion gets its own line as it gets its own event.
        if (label, sample.phase, done) == last:
            continue
        last = (label, sample.phase, done)
        for axis in axes:
            axis.axvline(sample.t, color=STEP_COLOUR, ls=":", lw=0.8)
        phase = "" if sample.phase in (None, "Progressing") else f" {sample.phase}"
        if done:
            phase = " promoting"
        text = ("-" if label == "-" else f"step {label}") + phase
        top.annotate(
            text,
            (sample.t, 1.02),
            xycoords=top.get_xaxis_transform(),
            fontsize=7,
            rotation=30,
            color="0.3",
        )


def plot(result: Result, path: Path) -> None:
    """Draw ``result`` (``figure``) into the PNG ``path`` (its directory is created)."""
    fig = figure(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)  # Agg: a Figure without pyplot draws headless
