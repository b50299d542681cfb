"""The resource types the emulator serves, and the discovery documents that describe them.

Built-in types are declared here; custom resources come from CustomResourceDefinitions created
through ``apiextensions.k8s.io/v1`` (the project's own CRDs are created that way at start-up).
A type is stored once per (group, plural) and served at every version it lists, the object's
``apiVersion`` rewritten to the version asked for (as the apiserver converts with strategy None).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rollout.sandbox.errors import ApiError, PageNotFound

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ScalePaths:
    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    # kubectl get CATEGORY lists every type naming it (discovery's "categories").
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: ScalePaths | None = None
    # Strategic merge patch exists only for built-in types; custom resources answer 415. False
    # also marks a custom resource for the rest of its semantics (no unconditional update).
    strategic: bool = True
    # Whether ``metadata.generation`` is kept: custom resources and the built-in types whose
    # strategy sets it (apps workloads, CRDs), not ConfigMaps, Secrets, Services, Leases...
    generation: bool = False
    # openAPIV3Schema per version (custom resources only): prune and validate writes.
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = ()

    @property
    def custom(self) -> bool:
        return not self.strategic

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def preferred(self) -> str:
        return self.versions[0]


def _t(
    group: str,
    versions: tuple[str, ...],
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    scale: bool = False,
    generation: bool = False,
    custom: bool = False,
) -> ResourceType:
    return ResourceType(
        group=group,
        versions=versions,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        status=status,
        scale=ScalePaths() if scale else None,
        strategic=not custom,
        generation=generation or custom,
    )


ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")

BUILTINS: tuple[ResourceType, ...] = (
    _t("", ("v1",), "Namespace", "namespaces", namespaced=False, short=("ns",), status=True),
    _t("", ("v1",), "Service", "services", short=("svc",), status=True),
    _t("", ("v1",), "Event", "events", short=("ev",)),
    _t("", ("v1",), "ConfigMap", "configmaps", short=("cm",)),
    _t("", ("v1",), "Secret", "secrets"),
    _t("", ("v1",), "Pod", "pods", short=("po",), status=True),
    _t("", ("v1",), "ServiceAccount", "serviceaccounts", short=("sa",)),
    _t(
        "apps",
        ("v1",),
        "ReplicaSet",
        "replicasets",
        short=("rs",),
        status=True,
        scale=True,
        generation=True,
    ),
    _t(
        "apps",
        ("v1",),
        "Deployment",
        "deployments",
        short=("deploy",),
        status=True,
        scale=True,
        generation=True,
    ),
    _t("coordination.k8s.io", ("v1",), "Lease", "leases"),
    # What the chart installs (kubectl apply of ``helm template charts/rollout-controller``).
    _t("rbac.authorization.k8s.io", ("v1",), "Role", "roles"),
    _t("rbac.authorization.k8s.io", ("v1",), "RoleBinding", "rolebindings"),
    _t("rbac.authorization.k8s.io", ("v1",), "ClusterRole", "clusterroles", namespaced=False),
    _t(
        "rbac.authorization.k8s.io",
        ("v1",),
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    _t(
        "policy",
        ("v1",),
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short=("pdb",),
        status=True,
        generation=True,
    ),
    # Istio's types are CRDs in a real cluster (with a status subresource, schema-less here).
    _t(
        "networking.istio.io",
        ISTIO_VERSIONS,
        "VirtualService",
        "virtualservices",
        short=("vs",),
        status=True,
        custom=True,
    ),
    _t(
        "networking.istio.io",
        ISTIO_VERSIONS,
        "DestinationRule",
        "destinationrules",
        short=("dr",),
        status=True,
        custom=True,
    ),
    _t(
        "apiextensions.k8s.io",
        ("v1",),
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short=("crd", "crds"),
        status=True,
        generation=True,
    ),
)


def from_crd(crd: dict[str, Any]) -> ResourceType:
    """The resource type a CustomResourceDefinition declares (validated by the caller)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served", True)]
    # The storage version first: it is the preferred version in discovery.
    served.sort(key=lambda v: not v.get("storage", False))
    first = served[0]
    subresources = first.get("subresources") or {}
    scale = subresources.get("scale")
    return ResourceType(
        group=spec["group"],
        versions=tuple(v["name"] for v in served),
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status="status" in subresources,
        scale=(
            ScalePaths(
                scale["specReplicasPath"],
                scale["statusReplicasPath"],
                scale.get("labelSelectorPath"),
            )
            if scale is not None
            else None
        ),
        strategic=False,
        generation=True,
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in served},
        printer_columns=tuple(first.get("additionalPrinterColumns") or ()),
    )


class Registry:
    """Thread-safe lookup of served types by (group, version, plural)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str], ResourceType] = {t.key: t for t in BUILTINS}
        # Moves on every add/remove: what derived documents (OpenAPI) are cached by.
        self.generation = 0

    def add(self, rtype: ResourceType) -> None:
        with self._lock:
            self._types[rtype.key] = rtype
            self.generation += 1

    def remove(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._types.pop(key, None)
            self.generation += 1

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def get(self, group: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, plural))

    def built_in_group(self, group: str) -> bool:
        """Whether ``group`` has a built-in type (not only custom resources): the apiserver
        answers a 404 under it with a ``Status``, under any other with plain text."""
        with self._lock:
            return group == "" or any(
                t.group == group and not t.custom for t in self._types.values()
            )

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.get(group, plural)
        if (rtype is None or version not in rtype.versions) and not self.built_in_group(group):
            raise PageNotFound()
        if rtype is None or version not in rtype.versions:
            gv = f"{group}/{version}" if group else version
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({gv} {plural})"
            )
        return rtype

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions (preferred first), for ``/apis``."""
        groups: dict[str, list[str]] = {}
        for rtype in self.all():
            if not rtype.group:
                continue
            versions = groups.setdefault(rtype.group, [])
            for version in rtype.versions:
                if version not in versions:
                    versions.append(version)
        return groups

    def api_group_list(self) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                    "preferredVersion": {
                        "groupVersion": f"{group}/{versions[0]}",
                        "version": versions[0],
                    },
                }
                for group, versions in sorted(self.group_versions().items())
            ],
        }

    def resource_list(self, group: str, version: str) -> dict[str, Any]:
        served = [t for t in self.all() if t.group == group and version in t.versions]
        if not served:
            gv = f"{group}/{version}" if group else version
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({gv})"
            )
        resources: list[dict[str, Any]] = []
        for t in sorted(served, key=lambda t: t.plural):
            resources.append(
                {
                    "name": t.plural,
                    "singularName": t.singular,
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": VERBS,
                    "shortNames": list(t.short_names),
                    **({"categories": list(t.categories)} if t.categories else {}),
                }
            )
            if t.status:
                resources.append(
                    {
                        "name": f"{t.plural}/status",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "kind": t.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if t.scale is not None:
                resources.append(
                    {
                        "name": f"{t.plural}/scale",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }
