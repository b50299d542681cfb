"""How fast ``rollout demo``'s bad canary is rolled back, and how much memory the demo takes.

Runs ``rollout demo --scenario bad-canary --json`` RUNS times (default 3, argv[1]) as a
subprocess and reports, from each timeline: the time from the first sample whose canary error
rate (as Prometheus sees it over the gate window) is above the gate's max to the first sample
with the canary's weight back at 0 (1 s sampling: +-1 s), the command's wall time and the
peak RSS of its largest process (the Python one running sandbox, traffic and controller, or
its Prometheus).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def one_run(out: Path) -> tuple[float, float, float]:
    """(seconds from first failing measurement to weight 0, wall seconds, peak RSS MiB)."""
    start = time.monotonic()
    subprocess.run(
        [ROLLOUT, "demo", "--scenario", "bad-canary", "--json", str(out)],
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over children
    result = json.loads(out.read_text())
    limit = result["thresholds"]["errorRate"]
    timeline = result["timeline"]
    failing = next(s["t"] for s in timeline if (s["canaryErrorRate"] or 0) > limit)
    back = next(s["t"] for s in timeline if s["t"] >= failing and s["canaryWeight"] == 0)
    return back - failing, wall, rss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    latencies, walls, rss = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            latency, wall, peak = one_run(Path(tmp) / f"run{i}.json")
            latencies.append(latency)
            walls.append(wall)
            rss = max(rss, peak)
            print(f"run {i + 1}: failing -> weight 0 in {latency:.1f}s, demo {wall:.1f}s")
    print(
        f"bad-canary over {runs} runs: first failing measurement -> canary weight 0: "
        f"median {statistics.median(latencies):.1f}s, p99 {percentile(latencies, 0.99):.1f}s; "
        f"demo wall time median {statistics.median(walls):.1f}s; peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
