"""``rollout demo --plot``: weights and gate metrics over time, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from rollout.demo import Result


def plot(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in result.timeline]
    fig, (top, errors, latency) = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    fig.suptitle(
        f"rollout demo --scenario {result.scenario}: {result.outcome} "
        f"after {result.durationSeconds:.0f}s"
    )
    top.step(t, [s.canaryWeight for s in result.timeline], where="post", label="canary weight %")
    top.step(t, [s.stableWeight for s in result.timeline], where="post", label="stable weight %")
    if any(s.mirrorPercent for s in result.timeline):
        top.step(t, [s.mirrorPercent for s in result.timeline], where="post", label="mirror %")
    top.set_ylabel("traffic %")
    top.set_ylim(-5, 105)
    for side, colour in (("canary", "tab:red"), ("stable", "tab:blue")):
        errors.plot(
            t,
            [getattr(s, f"{side}ErrorRate") for s in result.timeline],
            color=colour,
            label=f"{side} error rate",
        )
        latency.plot(
            t,
            [getattr(s, f"{side}P99Ms") for s in result.timeline],
            color=colour,
            label=f"{side} p99 ms",
        )
    errors.axhline(result.thresholds["errorRate"], color="k", ls="--", label="gate max")
    latency.axhline(result.thresholds["p99Ms"], color="k", ls="--", label="gate max")
    errors.set_ylabel("5xx share")
    latency.set_ylabel("p99 (ms)")
    latency.set_xlabel("seconds since the update to v2")
    for event in result.events:
        failed = event["what"] == "gate failed"
        for axis in (top, errors, latency):
            axis.axvline(
                event["t"], color="tab:red" if failed else "0.7", ls="-" if failed else ":", lw=1
            )
        if not failed:
            top.annotate(event["what"], (event["t"], 102), fontsize=7, rotation=30)
    for axis in (top, errors, latency):
        axis.legend(loc="center left", fontsize=8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
