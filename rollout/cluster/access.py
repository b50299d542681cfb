"""The ClusterAccess seam: what the controller needs from the Kubernetes API, over plain dicts.

One production implementation (``kube.py``, the only importer of ``kubernetes``), the sandbox
behind it in tests. Errors are typed so that callers never parse HTTP codes: ``NotFound``,
``Conflict`` (a stale resourceVersion or an existing name), ``Invalid`` (422, with the
apiserver's causes), ``Gone`` (a watch too old to resume), ``Unavailable`` (retries spent),
``NotLeader`` (a write the leader-election fence refused before sending it; see ``fence.py``),
``BadConfig`` (a kubeconfig or context that cannot be used).
``ClusterError.rejects`` says whether a refusal is final (a 4xx other than 401/404/409/410/429).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
Objs = list[Obj]
Ops = list[Obj]  # a JSON patch
PatchType = Literal["merge", "json", "strategic"]


@dataclass(frozen=True)
class Resource:
    """A resource type, as a REST path needs it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name is not None else "")


ROLLOUTS = Resource("rollout.dev", "v1alpha1", "rollouts", "Rollout")
ANALYSIS_TEMPLATES = Resource("rollout.dev", "v1alpha1", "analysistemplates", "AnalysisTemplate")
REPLICA_SETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
VIRTUAL_SERVICES = Resource("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
DESTINATION_RULES = Resource(
    "networking.istio.io", "v1beta1", "destinationrules", "DestinationRule"
)
SERVICES = Resource("", "v1", "services", "Service")
EVENTS = Resource("", "v1", "events", "Event")
PODS = Resource("", "v1", "pods", "Pod")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)


class ClusterError(Exception):
    """A request the API refused; ``code``, ``reason`` and ``detail`` (the API's own message,
    without the request) as in its Status body."""

    def __init__(
        self, message: str, *, code: int = 0, reason: str = "", detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.detail = message if detail is None else detail

    @property
    def rejects(self) -> bool:
        """Whether the API refused this request for good: sending it again changes nothing.

        400 BadRequest, 403 Forbidden (RBAC, a terminating namespace, a quota), 422 Invalid and
        the other 4xx, except 401 (credentials can be refreshed), 404 (the object is gone:
        the next reconcile sees that), 409 (a conflict: read again), 410 Gone and 429
        TooManyRequests (come back later). 5xx and transport errors are never rejections.
        """
        return 400 <= self.code < 500 and self.code not in (401, 404, 409, 410, 429)


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class Invalid(ClusterError):
    def __init__(
        self,
        message: str,
        *,
        causes: list[Mapping[str, Any]] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=422, reason="Invalid", detail=detail)
        self.causes = list(causes or [])


class Gone(ClusterError):
    """The resourceVersion is too old: list again."""


class Forbidden(ClusterError):
    pass


class Unavailable(ClusterError):
    """The API could not be reached, or kept failing, within the retry budget."""


class BadConfig(ClusterError):
    """A kubeconfig or context that cannot be used (missing file, invalid YAML, no such
    context): the caller's input, found before any request was sent."""


class NotLeader(ClusterError):
    """A write refused before it was sent: this replica does not hold the Lease, or has not
    renewed it within the renew deadline. Not an API error: nothing was sent, and retrying
    is pointless until the replica leads again."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: Obj = field(default_factory=dict)

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class ClusterAccess(Protocol):
    def get(self, res: Resource, namespace: str | None, name: str) -> Obj: ...

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]: ...

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj: ...

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj: ...

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj: ...

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj: ...

    def delete(self, res: Resource, namespace: str | None, name: str) -> None: ...

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]: ...

    def event(
        self, involved: Obj, type_: str, reason: str, message: str, component: str
    ) -> None: ...
