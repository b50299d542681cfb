"""Rules that span several fields of a Rollout, reported as ``(field path, reason)`` problems.

The CEL rules on ``RolloutSpec`` say the same for the API server; here every problem is found at
once, with the exact field path, for ``rollout lint`` and for the controller's InvalidSpec
condition. Rules that need other documents (templateRef resolution) live in ``rollout.lint``.
"""

from __future__ import annotations

from analysis.query import unknown_variables
from rollout.api.rollout import RolloutSpec
from rollout.api.template import AnalysisTemplateSpec

Problem = tuple[str, str]


def spec_problems(spec: RolloutSpec) -> list[Problem]:
    """Problems in ``spec``; paths are relative to ``spec``."""
    problems: list[Problem] = []
    selector = spec.selector
    if not selector.match_labels and not selector.match_expressions:
        problems.append(("selector", "must select something: set matchLabels or matchExpressions"))
    elif not selector.matches(spec.template.metadata.labels):
        problems.append(
            (
                "selector",
                f"does not match template.metadata.labels {spec.template.metadata.labels}",
            )
        )
    if spec.analysis is not None and spec.analysis.prometheus.timeout > spec.analysis.interval:
        problems.append(
            (
                "analysis.prometheus.timeout",
                "must not be longer than analysis.interval: a query never overlaps the next",
            )
        )
    gate_needed = "needs spec.analysis (the gate it runs)"
    strategy = spec.strategy
    if spec.analysis is None:
        if strategy.canary is not None:
            for i, step in enumerate(strategy.canary.steps):
                if step.analysis is not None:
                    problems.append((f"strategy.canary.steps[{i}].analysis", gate_needed))
        if strategy.blue_green is not None:
            if strategy.blue_green.pre_promotion_analysis is not None:
                problems.append(("strategy.blueGreen.prePromotionAnalysis", gate_needed))
            if strategy.blue_green.post_promotion_analysis is not None:
                problems.append(("strategy.blueGreen.postPromotionAnalysis", gate_needed))
        if strategy.mirror is not None:
            problems.append(
                ("strategy.mirror", "analyses the mirrored traffic, so it " + gate_needed)
            )
    return problems


def template_problems(spec: AnalysisTemplateSpec) -> list[Problem]:
    """Problems in an AnalysisTemplate's ``spec``: variables must be declared or built in."""
    unknown = unknown_variables(spec.query, {a.name for a in spec.args})
    if not unknown:
        return []
    listed = ", ".join("{{" + u + "}}" for u in unknown)
    return [("query", f"unknown template variables {listed}: use declared args or built-ins")]
