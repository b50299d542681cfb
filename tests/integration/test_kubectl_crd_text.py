"""``kubectl explain`` shows our CRDs' field text (issue 15 item 7), with the real kubectl.

The text is what the fields' docstrings say (``rollout.api.crdgen``): plain sentences with units
and defaults. Runs on both backends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kube_helpers import Kubectl

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            "rdro.spec.analysis.prometheus.timeout",
            "Default: 10s, or the gate's interval when that is shorter",
        ),
        ("rollouts.rollout.dev.spec.analysis.interval", "Default 30s"),
        ("rdro.spec.strategy.canary.steps.setWeight", "percent of traffic"),
        ("rdat.spec.noData", "Default inconclusive"),
    ],
)
def test_kubectl_explain_shows_the_field_text(
    sandbox_kubeconfig: Path, tmp_path: Path, field: str, expected: str
) -> None:
    kubectl = Kubectl(sandbox_kubeconfig, tmp_path / "kubectl-cache")
    out = " ".join(kubectl.ok("explain", field).split())
    assert expected in out, out
    assert "``" not in out and "Python" not in out, out
