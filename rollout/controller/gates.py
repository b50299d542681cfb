"""Measuring a Rollout's gate during observe: which checks are due, against which Prometheus.

The planner says when measurements fall due (``analysis.measurement.due_checks`` on the status'
run); this module takes them — each due check queried once, a Rollout's checks concurrently —
and hands the measurements to the planner. Built-in checks are batched (``analysis.batch``):
Rollouts reading the same Prometheus with the same credentials share one grouped query per
check shape and scrape-interval slot, each judged on its own parts of the answer; templates are
queried per Rollout. The Prometheus address is the spec's, else the
controller's ``--prometheus-url``; credentials come from the Rollout's namespace (Secrets) or
files, and providers are cached per configuration for a minute so that rotated Secrets are
picked up. A gate that cannot be measured gives Error measurements with the reason, never a
silent pass.

Before the canary's first traffic, ``preflight`` resolves and runs every check once (template
found, arguments complete, no undeclared variable, a Prometheus address, readable credential
Secrets, the query accepted by Prometheus; the value is ignored: the canary has no traffic
yet). A pass is remembered per (Rollout uid, generation, canary revision); a failure is
checked again at the next reconcile.
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
from analysis.batch import SharedAnswers
from analysis.prometheus import PrometheusAuth, PrometheusProvider
from analysis.provider import BadQuery, MetricProvider
from analysis.query import UnknownVariable
from analysis.runner import GateContext, GateRunner, TemplateMissing, check_query, limits_of
from rollout.api.gate import Analysis, PrometheusConfig
from rollout.api.rollout import Rollout
from rollout.api.status import Measurement, RolloutStatus
from rollout.api.template import AnalysisTemplate, AnalysisTemplateSpec
from rollout.cluster.access import ClusterAccess, ClusterError, Forbidden, NotFound, Obj, Resource
from rollout.controller.execute import CANONICAL_NAME, CANONICAL_REVISION
from rollout.domain.observed import PREFLIGHT_OK, Preflight
from rollout.domain.revision import HASH_LABEL

SECRETS = Resource("", "v1", "secrets", "Secret")
PROVIDER_TTL = 60.0
PROMETHEUS = "spec.analysis.prometheus"
# Preflight: how soon an unreachable Prometheus is asked again; how soon a missing or
# unreadable Secret is read again (Secrets are not watched: the controller may only `get` them).
PREFLIGHT_RETRY_SECONDS = 5.0
SECRET_RECHECK_SECONDS = 30.0


class GateConfigError(ValueError):
    """The gate's Prometheus configuration cannot be used: ``path`` is the field to fix."""

    def __init__(self, path: str, reason: str, *, recheck_after: float | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.recheck_after = recheck_after


class GateMeasurer:
    def __init__(
        self,
        access: ClusterAccess,
        templates: Callable[[str, str], Obj | None],
        default_address: str | None = None,
        *,
        batch: bool = True,
    ) -> None:
        self.access = access
        self.templates = templates
        self.default_address = default_address
        # Built-in checks' grouped answers, shared by Rollouts (None: one query per Rollout).
        self.shared = SharedAnswers() if batch else None
        self.runner = GateRunner(self._template, shared=self.shared)
        self._providers: dict[str, tuple[float, MetricProvider]] = {}
        # Rollout uid -> (generation, canary revision) whose preflight passed
        self._preflight_passed: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def _template(self, namespace: str, name: str) -> AnalysisTemplateSpec | None:
        """The template for a measurement: one missing or not parsing is None ("not found")."""
        try:
            return self._lookup(namespace, name)
        except TemplateMissing:
            return None

    def preflight(
        self,
        rollout: Rollout,
        status: RolloutStatus,
        replica_sets: list[Obj],
        revision: str,
    ) -> Preflight:
        """Resolve and run every check of ``spec.analysis`` once for canary ``revision``.

        ``invalid`` (bad input, with the field path): no Prometheus address, a credential
        Secret or key missing or forbidden, a ``templateRef`` to a missing AnalysisTemplate,
        an argument missing or unknown, an undeclared variable, a query Prometheus refuses
        (HTTP 400/422). ``unreachable``: no usable answer (refused connection, timeout, 5xx,
        garbage), asked again in ``PREFLIGHT_RETRY_SECONDS``. Only acceptance matters, not the
        values. Other API errors reading a Secret propagate (the reconcile is retried).
        """
        analysis = rollout.spec.analysis
        if analysis is None:
            return PREFLIGHT_OK
        uid = str(rollout.metadata.uid or "")
        key = (rollout.metadata.generation or 0, revision)
        with self._lock:
            if uid and self._preflight_passed.get(uid) == key:
                return PREFLIGHT_OK
        try:
            provider = self._provider(analysis.prometheus, rollout.namespace, analysis)
        except GateConfigError as error:
            return Preflight("invalid", str(error), error.recheck_after)
        address = analysis.prometheus.address or self.default_address
        context = self._context(rollout, status, replica_sets, revision)
        queries: list[tuple[int, str, str]] = []
        problems: list[str] = []
        for i, check in enumerate(analysis.checks):
            path = f"spec.analysis.checks[{i}]"
            try:
                queries.append((i, check.name, check_query(analysis, check, context, self._lookup)))
            except TemplateMissing as error:
                problems.append(f"{path}.templateRef: check {check.name!r}: {error}")
            except UnknownVariable as error:
                assert check.template_ref is not None  # built-in checks have no variables
                where = f"AnalysisTemplate {rollout.namespace}/{check.template_ref.name}"
                problems.append(f"{path}.templateRef: check {check.name!r}: {where}: {error}")
        if problems:
            return Preflight("invalid", "; ".join(problems))
        # Sent without a time (Prometheus's own now): the value does not matter, and an error
        # message that is the same at every try keeps the held status from changing.
        futures = [
            (i, name, self.runner.pool.submit(provider.query, query)) for i, name, query in queries
        ]
        unreachable: list[str] = []
        for i, name, future in futures:
            try:
                future.result()
            except BadQuery as error:
                problems.append(f"spec.analysis.checks[{i}]: check {name!r}: {error}")
            except Exception as error:  # Unreachable, BadResponse, or a provider's bug
                unreachable.append(f"check {name!r}: {error}")
        if problems:
            return Preflight("invalid", "; ".join(problems))
        if unreachable:
            message = f"waiting for Prometheus at {address}: {unreachable[0]}"
            return Preflight("unreachable", message, PREFLIGHT_RETRY_SECONDS)
        if uid:
            with self._lock:
                self._preflight_passed[uid] = key
        return PREFLIGHT_OK

    def _lookup(self, namespace: str, name: str) -> AnalysisTemplateSpec | None:
        """The template for preflight; one that does not parse is reported, not skipped."""
        obj = self.templates(namespace, name)
        if obj is None:
            return None
        try:
            return AnalysisTemplate.model_validate(obj).spec
        except ValueError as error:
            reason = str(error).splitlines()[0]
            raise TemplateMissing(
                f"AnalysisTemplate {namespace}/{name} is invalid: {reason}"
            ) from error

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
        context = self._context(rollout, status, replica_sets, status.canary_revision)
        try:
            provider = self._provider(analysis.prometheus, rollout.namespace, analysis)
        except (ClusterError, ValueError) as error:
            message = f"cannot reach the gate's Prometheus: {error}"
            checks = {c.name: c for c in analysis.checks}
            return tuple((n, _unmeasured(now, message, *limits_of(checks[n], None))) for n in due)
        source = self.source(analysis.prometheus, rollout.namespace)
        taken = self.runner.measure(analysis, context, provider, due, now, source=source)
        return tuple((t.check, t.measurement) for t in taken)

    def source(self, config: PrometheusConfig, namespace: str) -> str:
        """Which Prometheus answers, as whom: Rollouts with the same source share answers.

        The address and the whole configuration (headers such as a tenant id, token file,
        timeout); the namespace too when a credential comes from a Secret, since Secrets are
        per namespace and a multi-tenant Prometheus may answer each its own share.
        """
        address = config.address or self.default_address
        secrets = config.bearer_token_secret or config.basic_auth_secret or config.ca_secret
        whose = namespace if secrets is not None else ""
        return json.dumps([address, whose, config.model_dump(mode="json")], sort_keys=True)

    def _context(
        self,
        rollout: Rollout,
        status: RolloutStatus,
        replica_sets: list[Obj],
        canary: str | None,
    ) -> GateContext:
        """Whose gate: the Rollout's service and its ``canary`` and stable revisions."""
        labels = rollout.spec.template.metadata.labels
        return GateContext(
            rollout=rollout.metadata.name,
            namespace=rollout.namespace,
            service=labels.get(CANONICAL_NAME, rollout.metadata.name),
            canary_revision=_canonical(replica_sets, canary),
            stable_revision=_canonical(replica_sets, status.stable_revision),
        )

    def _provider(
        self, config: PrometheusConfig, namespace: str, analysis: Analysis
    ) -> MetricProvider:
        address = config.address or self.default_address
        if not address:
            raise GateConfigError(
                f"{PROMETHEUS}.address",
                "no Prometheus address: set it, or run the controller with --prometheus-url",
            )
        # Retries stop well before the next measurement is due: a provider is per budget too,
        # so one gate's budget is never used by a gate with a shorter interval.
        budget = min(float(config.timeout), analysis.interval / 2)
        key = json.dumps(
            [address, namespace, budget, config.model_dump(mode="json")], sort_keys=True
        )
        with self._lock:
            cached = self._providers.get(key)
            if cached is not None and time.monotonic() - cached[0] < PROVIDER_TTL:
                return cached[1]
        auth = self._auth(config, namespace)
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
            token = self._secret(namespace, ref.name, ref.key, "bearerTokenSecret")
        if config.basic_auth_secret is not None:
            name = config.basic_auth_secret
            basic = (
                self._secret(namespace, name, "username", "basicAuthSecret"),
                self._secret(namespace, name, "password", "basicAuthSecret"),
            )
        if config.ca_secret is not None:
            ref = config.ca_secret
            ca_file = self._ca_file(self._secret(namespace, ref.name, ref.key, "caSecret"))
        return PrometheusAuth(
            headers=dict(config.headers),
            bearer_token=token,
            bearer_token_file=config.bearer_token_file,
            basic_auth=basic,
            ca_file=ca_file,
            insecure=config.insecure_skip_verify,
        )

    def _secret(self, namespace: str, name: str, key: str, field: str) -> str:
        """A Secret's key, decoded; a missing or forbidden one is a ``GateConfigError`` naming
        ``spec.analysis.prometheus.<field>`` (other API errors propagate)."""
        path = f"{PROMETHEUS}.{field}"
        later = SECRET_RECHECK_SECONDS
        try:
            secret = self.access.get(SECRETS, namespace, name)
        except NotFound:
            raise GateConfigError(
                path, f"Secret {namespace}/{name} not found", recheck_after=later
            ) from None
        except Forbidden as error:
            raise GateConfigError(
                path, f"cannot read Secret {namespace}/{name}: {error}", recheck_after=later
            ) from None
        data = (secret.get("data") or {}).get(key)
        if data is None:
            raise GateConfigError(
                path, f"Secret {namespace}/{name} has no key {key!r}", recheck_after=later
            )
        try:
            return base64.b64decode(data).decode().strip()
        except ValueError as error:
            raise GateConfigError(
                path, f"Secret {namespace}/{name} key {key!r} is not readable: {error}"
            ) from None

    def _ca_file(self, pem: str) -> str:
        """A CA bundle from a Secret, written once to a file named by its content."""
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"rollout-ca-{digest}.pem"
        if not path.exists():
            path.write_text(pem)
        return str(path)

    def close(self) -> None:
        self.runner.close()


def _unmeasured(at: datetime, message: str, unit: str | None, threshold: str | None) -> Measurement:
    """An Error measurement for a check that could not be measured, with what it is judged by."""
    return Measurement(
        at=at, phase="Error", message=message, unit=unit, threshold=threshold or None
    )


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
