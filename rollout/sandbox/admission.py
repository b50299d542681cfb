"""Type-specific behaviour of the emulator: defaults, validation, CRD registration.

What the apiserver's registry strategies and admission do for the types we serve, as far as
the controller can observe it: names must be DNS-1123; Services get a ``clusterIP``; a
Namespace is Active; a ReplicaSet or Deployment gets the pod defaults in its template and
needs a selector that matches its template's labels, and that selector is immutable; custom
resources are pruned and validated against their CRD's ``openAPIV3Schema`` (with CEL rules); a
CRD becomes a served type once created.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import threading
from typing import Any

from rollout.sandbox import schema
from rollout.sandbox.errors import invalid
from rollout.sandbox.resources import Registry, ResourceType, from_crd
from rollout.sandbox.store import Event, Obj, now_rfc3339

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAMES = {("", "namespaces"), ("", "services")}
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")


class SandboxAdmission:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._next_ip = 1

    # -- create defaults ----------------------------------------------------------------

    def on_create(self, rtype: ResourceType, obj: Obj) -> Obj:
        key = rtype.key
        if key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") in (None, ""):
                spec["clusterIP"] = self._allocate_ip()
            if spec["clusterIP"] != "None":
                spec["clusterIPs"] = [spec["clusterIP"]]
            obj["status"] = {"loadBalancer": {}}
        elif key == ("", "namespaces"):
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
        elif key in (("apps", "replicasets"), ("apps", "deployments")):
            obj.setdefault("spec", {}).setdefault("replicas", 1)
            obj["status"] = {"replicas": 0}
        elif key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            obj["status"] = _crd_status(obj)
        elif key == ("", "secrets"):
            obj.setdefault("type", "Opaque")
        return obj

    def _allocate_ip(self) -> str:
        with self._lock:
            address = SERVICE_RANGE.network_address + self._next_ip
            self._next_ip += 1
        return str(address)

    # -- validation ---------------------------------------------------------------------

    def validate(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        name = str(obj["metadata"].get("name", ""))
        pattern = DNS_LABEL if rtype.key in LABEL_NAMES else DNS_SUBDOMAIN
        limit = 63 if rtype.key in LABEL_NAMES else 253
        if not pattern.match(name) or len(name) > limit:
            what = "RFC 1123 label" if rtype.key in LABEL_NAMES else "RFC 1123 subdomain"
            raise invalid(
                rtype.group,
                rtype.kind,
                name,
                [
                    (
                        "metadata.name",
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
                        "alphanumeric characters, '-' or '.'",
                    )
                ],
            )
        meta_causes = _object_meta(obj["metadata"], "metadata")
        workload = rtype.key in (("apps", "replicasets"), ("apps", "deployments"))
        if meta_causes and not workload:
            raise invalid(rtype.group, rtype.kind, name, meta_causes)
        if rtype.schemas:
            return self._custom(rtype, obj, old)
        if rtype.key == ("", "secrets"):
            obj = _secret(obj)
        if workload:  # its metadata's causes and its spec's in one answer, as the apiserver
            default_pod_template((obj.get("spec") or {}).get("template"))
            _workload(rtype, obj, old, meta_causes)
        elif rtype.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            _crd(obj, old)
        return obj

    def _custom(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        openapi = rtype.schemas.get(rtype.preferred) or {}
        if not openapi:
            return obj
        pruned = schema.prune(obj, openapi)
        causes = schema.validate(pruned, openapi, old)
        if causes:
            name = str(obj["metadata"].get("name", ""))
            raise invalid(
                rtype.group, rtype.kind, name, [(c.field, c.reason, c.message) for c in causes]
            )
        return pruned

    # -- reactions ----------------------------------------------------------------------

    def committed(self, rtype: ResourceType, event: Event) -> None:
        if rtype.key != ("apiextensions.k8s.io", "customresourcedefinitions"):
            return
        if event.type == "DELETED":
            self.registry.remove(from_crd(event.obj).key)
        else:
            self.registry.add(from_crd(event.obj))


LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ANNOTATIONS_LIMIT = 256 * 1024
Cause = tuple[str, str, str]


def _qualified_name(key: str) -> str | None:
    """Why ``key`` is not a qualified name (label or annotation key), or None if it is."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not LABEL_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def _object_meta(meta: Obj, path: str) -> list[Cause]:
    """ObjectMeta validation (apimachinery's ValidateObjectMeta): labels, annotations, owners."""
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [(f"{path}.labels", "FieldValueInvalid", "Invalid value: must be an object")]
    for key, value in labels.items():
        problem = _qualified_name(str(key))
        if problem:
            causes.append(
                (f"{path}.labels", "FieldValueInvalid", f'Invalid value: "{key}": {problem}')
            )
        if not isinstance(value, str):
            causes.append((f"{path}.labels", "FieldValueInvalid", f"Invalid value: {value!r}"))
        elif len(value) > 63:
            causes.append(
                (
                    f"{path}.labels",
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": must be no more than 63 characters',
                )
            )
        elif not LABEL_VALUE.match(value):
            causes.append(
                (
                    f"{path}.labels",
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist '
                    "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        for key in annotations:
            problem = _qualified_name(str(key))
            if problem:
                causes.append(
                    (
                        f"{path}.annotations",
                        "FieldValueInvalid",
                        f'Invalid value: "{key}": {problem}',
                    )
                )
        size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if size > ANNOTATIONS_LIMIT:
            causes.append(
                (
                    f"{path}.annotations",
                    "FieldValueTooLong",
                    f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes",
                )
            )
    for ref in meta.get("ownerReferences") or []:
        for field, what in (
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ):
            if not (ref or {}).get(field):
                causes.append(
                    (
                        f"{path}.ownerReferences.{field}",
                        "FieldValueInvalid",
                        f'Invalid value: "": {what} must not be empty',
                    )
                )
    return causes


def _pod_template(template: Obj) -> list[Cause]:
    """The part of ValidatePodTemplateSpec a controller can get wrong: labels and containers.

    As in Kubernetes' ValidatePodTemplateSpec, the template's labels and annotations are
    reported at ``spec.template.labels`` / ``spec.template.annotations`` (not under
    ``metadata``), and its other metadata (name, ownerReferences) is not validated.
    """
    path = "spec.template"
    meta = template.get("metadata") or {}
    causes = _object_meta(
        {k: meta[k] for k in ("labels", "annotations") if isinstance(meta, dict) and k in meta},
        path,
    )
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return [*causes, (f"{path}.spec.containers", "FieldValueRequired", "Required value")]
    seen: set[str] = set()
    for i, container in enumerate(containers):
        here = f"{path}.spec.containers[{i}]"
        name = (container or {}).get("name")
        if not name:
            causes.append((f"{here}.name", "FieldValueRequired", "Required value"))
        elif not isinstance(name, str) or len(name) > 63 or not DNS_LABEL.match(name):
            causes.append(
                (
                    f"{here}.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower '
                    "case alphanumeric characters or '-'",
                )
            )
        elif name in seen:
            causes.append((f"{here}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        else:
            seen.add(name)
        if not (container or {}).get("image"):
            causes.append((f"{here}.image", "FieldValueRequired", "Required value"))
    return causes


# What kube-apiserver's defaulting (pkg/apis/core/v1/defaults.go) fills in on a pod template
# as it stores a ReplicaSet or Deployment, on every write; checked against kube-apiserver
# v1.34 by tests/integration/test_sandbox_pod_defaults.py. Not emulated: the defaults of rarer
# fields (other probe handlers, projected volumes, ephemeral containers ...).
POD_SPEC_DEFAULTS: dict[str, Any] = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}
CONTAINER_DEFAULTS: dict[str, Any] = {
    "resources": {},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1}
PROBE_FAILURES = 3
VOLUME_MODE = 0o644  # defaultMode of configMap, secret, downwardAPI and projected volumes


def _pull_policy(image: str) -> str:
    """``Always`` for an image without a tag or tagged ``latest``, else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_container(container: Any) -> None:
    if not isinstance(container, dict):
        return
    for key, value in CONTAINER_DEFAULTS.items():
        container.setdefault(key, copy.deepcopy(value))
    if isinstance(container.get("image"), str):
        container.setdefault("imagePullPolicy", _pull_policy(container["image"]))
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if not isinstance(probe, dict):
            continue
        for key, value in PROBE_DEFAULTS.items():
            probe.setdefault(key, value)
        probe.setdefault("failureThreshold", PROBE_FAILURES)
        if isinstance(probe.get("httpGet"), dict):
            probe["httpGet"].setdefault("scheme", "HTTP")


def default_pod_template(template: Any) -> None:
    """Fill in, in place, the defaults kube-apiserver gives a pod template (``POD_SPEC_DEFAULTS``,
    ``CONTAINER_DEFAULTS``, ``imagePullPolicy`` by the image's tag, port protocols, probe
    thresholds, ``fieldRef.apiVersion``, volume ``defaultMode``): what a client reads back from
    a ReplicaSet is not what it wrote."""
    pod = (template or {}).get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict):
        return
    for key, value in POD_SPEC_DEFAULTS.items():
        pod.setdefault(key, copy.deepcopy(value))
    for kind in ("containers", "initContainers"):
        for container in pod.get(kind) or []:
            _default_container(container)
    for volume in pod.get("volumes") or []:
        for source in ("configMap", "secret", "downwardAPI", "projected"):
            if isinstance((volume or {}).get(source), dict):
                volume[source].setdefault("defaultMode", VOLUME_MODE)


def _secret(obj: Obj) -> Obj:
    """``stringData`` is write-only: merged into ``data`` (base64), never stored."""
    if "stringData" not in obj:
        return obj
    data = dict(obj.get("data") or {})
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret = {k: v for k, v in obj.items() if k != "stringData"}
    if data:
        secret["data"] = data
    return secret


def _workload(rtype: ResourceType, obj: Obj, old: Obj | None, meta_causes: list[Cause]) -> None:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    causes = [*meta_causes, *_pod_template(spec.get("template") or {})]
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    elif any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        causes.append(
            (
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {labels}: `selector` does not match template `labels`",
            )
        )
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(
            (
                "spec.replicas",
                "FieldValueInvalid",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(("spec.selector", "FieldValueInvalid", "field is immutable"))
    if causes:
        raise invalid(rtype.group, rtype.kind, name, causes)


def _crd(obj: Obj, old: Obj | None) -> None:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    problems: list[tuple[str, str, str]] = []
    for field in ("group", "names", "versions"):
        if not spec.get(field):
            problems.append((f"spec.{field}", "FieldValueRequired", "Required value"))
    if not problems:
        if name != f"{names.get('plural')}.{spec['group']}":
            problems.append(
                (
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        if not names.get("kind") or not names.get("plural"):
            problems.append(("spec.names", "FieldValueRequired", "kind and plural are required"))
        storage = [v for v in spec["versions"] if v.get("storage")]
        if len(storage) != 1:
            problems.append(
                (
                    "spec.versions",
                    "FieldValueInvalid",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            )
        for i, version in enumerate(spec["versions"]):
            if not (version.get("schema") or {}).get("openAPIV3Schema"):
                problems.append(
                    (
                        f"spec.versions[{i}].schema.openAPIV3Schema",
                        "FieldValueRequired",
                        "Required value: schemas are required",
                    )
                )
    if problems:
        raise invalid("apiextensions.k8s.io", "CustomResourceDefinition", name, problems)


def _crd_status(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    condition = {
        "status": "True",
        "lastTransitionTime": now_rfc3339(),
        "message": "",
    }
    return {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "conditions": [
            {**condition, "type": "NamesAccepted", "reason": "NoConflicts"},
            {**condition, "type": "Established", "reason": "InitialNamesAccepted"},
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }
