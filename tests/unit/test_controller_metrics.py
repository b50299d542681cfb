"""The controller's Rollouts-per-phase gauge, kept as phases change, equals a recount."""

from __future__ import annotations

import random
from collections import Counter

from rollout.controller.metrics import PHASES, Metrics


def gauge(metrics: Metrics) -> dict[str, float]:
    return {
        s.labels["phase"]: s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "rollout_rollouts"
    }


def test_phase_counts_equal_a_recount_after_any_sequence() -> None:
    metrics = Metrics()
    assert gauge(metrics) == dict.fromkeys(PHASES, 0.0)
    chance = random.Random(14)
    phases: dict[str, str] = {}
    for _ in range(500):
        key = f"ns/r{chance.randrange(40)}"
        action = chance.random()
        if action < 0.15:
            metrics.forget(key)
            phases.pop(key, None)
        elif action < 0.2:
            metrics.observe_rollout(key, None, 0)
            phases.pop(key, None)
        else:
            phase = chance.choice((*PHASES, "Unknown"))
            metrics.observe_rollout(key, phase, 10)
            phases[key] = phase
        counts = Counter(phases.values())
        assert gauge(metrics) == {p: float(counts.get(p, 0)) for p in PHASES}
