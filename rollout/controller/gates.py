"""Measuring a Rollout's gate during observe: which checks are due, against which Prometheus.

The planner says when measurements fall due (``analysis.measurement.due_checks`` on the status'
run); this module takes them — each due check queried once, a Rollout's checks concurrently —
and hands the measurements to the planner. The Prometheus address is the spec's, else the
controller's ``--prometheus-url``; credentials come from the Rollout's namespace (Secrets) or
files, and providers are cached per configuration for a minute so that rotated Secrets are
picked up. A gate that cannot be measured gives Error measurements with the reason, never a
silent pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from analysis import measurement as gate
from analysis.prometheus import PrometheusAuth, PrometheusProvider
from analysis.provider import MetricProvider
from analysis.runner import GateContext, GateRunner
from rollout.api.gate import Analysis, PrometheusConfig
from rollout.api.rollout import Rollout
from rollout.api.status import Measurement, RolloutStatus
from rollout.api.template import AnalysisTemplate, AnalysisTemplateSpec
from rollout.cluster.access import ClusterAccess, ClusterError, Obj, Resource
from rollout.controller.execute import CANONICAL_NAME, CANONICAL_REVISION
from rollout.domain.revision import HASH_LABEL

SECRETS = Resource("", "v1", "secrets", "Secret")
PROVIDER_TTL = 60.0


class GateMeasurer:
    def __init__(
        self,
        access: ClusterAccess,
        templates: Callable[[str, str], Obj | None],
        default_address: str | None = None,
    ) -> None:
        self.access = access
        self.templates = templates
        self.default_address = default_address
        self.runner = GateRunner(self._template)
        self._providers: dict[str, tuple[float, MetricProvider]] = {}
        self._lock = threading.Lock()

    def _template(self, namespace: str, name: str) -> AnalysisTemplateSpec | None:
        obj = self.templates(namespace, name)
        if obj is None:
            return None
        try:
            return AnalysisTemplate.model_validate(obj).spec
        except ValueError:
            return None

    def measure(
        self, rollout: Rollout, status: RolloutStatus, replica_sets: list[Obj], now: datetime
    ) -> tuple[tuple[str, Measurement], ...]:
        analysis = rollout.spec.analysis
        run = status.analysis
        if analysis is None or run is None:
            return ()
        if status.abort or status.canary_revision == status.stable_revision:
            return ()  # nothing under way to judge: an unfinished run is not queried any more
        due = gate.due_checks(run, analysis, now)
        if not due:
            return ()
        context = self._context(rollout, status, replica_sets)
        try:
            provider = self._provider(analysis.prometheus, rollout.namespace, analysis)
        except (ClusterError, ValueError) as error:
            message = f"cannot reach the gate's Prometheus: {error}"
            return tuple((n, Measurement(at=now, phase="Error", message=message)) for n in due)
        taken = self.runner.measure(analysis, context, provider, due, now)
        return tuple((t.check, t.measurement) for t in taken)

    def _context(
        self, rollout: Rollout, status: RolloutStatus, replica_sets: list[Obj]
    ) -> GateContext:
        labels = rollout.spec.template.metadata.labels
        return GateContext(
            rollout=rollout.metadata.name,
            namespace=rollout.namespace,
            service=labels.get(CANONICAL_NAME, rollout.metadata.name),
            canary_revision=_canonical(replica_sets, status.canary_revision),
            stable_revision=_canonical(replica_sets, status.stable_revision),
        )

    def _provider(
        self, config: PrometheusConfig, namespace: str, analysis: Analysis
    ) -> MetricProvider:
        address = config.address or self.default_address
        if not address:
            raise ValueError(
                "no Prometheus address: set spec.analysis.prometheus.address or run the "
                "controller with --prometheus-url"
            )
        key = json.dumps([address, namespace, config.model_dump(mode="json")], sort_keys=True)
        with self._lock:
            cached = self._providers.get(key)
            if cached is not None and time.monotonic() - cached[0] < PROVIDER_TTL:
                return cached[1]
        auth = self._auth(config, namespace)
        # Retries stop well before the next measurement is due.
        budget = min(float(config.timeout), analysis.interval / 2)
        provider = PrometheusProvider(address, timeout=config.timeout, budget=budget, auth=auth)
        with self._lock:
            self._providers[key] = (time.monotonic(), provider)
        return provider

    def _auth(self, config: PrometheusConfig, namespace: str) -> PrometheusAuth:
        token = None
        basic = None
        ca_file = config.ca_file
        if config.bearer_token_secret is not None:
            ref = config.bearer_token_secret
            token = self._secret(namespace, ref.name, ref.key)
        if config.basic_auth_secret is not None:
            basic = (
                self._secret(namespace, config.basic_auth_secret, "username"),
                self._secret(namespace, config.basic_auth_secret, "password"),
            )
        if config.ca_secret is not None:
            ref = config.ca_secret
            ca_file = self._ca_file(self._secret(namespace, ref.name, ref.key))
        return PrometheusAuth(
            headers=dict(config.headers),
            bearer_token=token,
            bearer_token_file=config.bearer_token_file,
            basic_auth=basic,
            ca_file=ca_file,
            insecure=config.insecure_skip_verify,
        )

    def _secret(self, namespace: str, name: str, key: str) -> str:
        secret = self.access.get(SECRETS, namespace, name)
        data = (secret.get("data") or {}).get(key)
        if data is None:
            raise ValueError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode().strip()

    def _ca_file(self, pem: str) -> str:
        """A CA bundle from a Secret, written once to a file named by its content."""
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"rollout-ca-{digest}.pem"
        if not path.exists():
            path.write_text(pem)
        return str(path)

    def close(self) -> None:
        self.runner.close()


def _canonical(replica_sets: list[Obj], revision: str | None) -> str:
    """The revision as Istio labels it: the pods' canonical-revision, else the hash."""
    if revision is None:
        return ""
    for rs in replica_sets:
        labels = rs.get("metadata", {}).get("labels") or {}
        if labels.get(HASH_LABEL) != revision:
            continue
        template_labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {})
        return str((template_labels.get("labels") or {}).get(CANONICAL_REVISION, revision))
    return revision
