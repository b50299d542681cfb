"""Step 4 of a reconcile: write the new status as one merge patch of what changed.

The patch holds only the fields that differ from the status that was read (nested maps
recursively, lists whole, removed fields as null), plus that read's ``resourceVersion`` as a
precondition: an operator flag written meanwhile makes the patch a Conflict, and the reconcile
runs again on fresh data, so an operator's ``abort`` or ``promote`` is never erased.
"""

from __future__ import annotations

from typing import Any

from rollout.api.status import RolloutStatus
from rollout.cluster.access import ROLLOUTS, ClusterAccess, Obj


def merge_diff(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (None when equal)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value) if isinstance(value, dict) else value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def status_patch(obj: Obj, status: RolloutStatus) -> Obj | None:
    """The status patch for ``obj``, or None when nothing changed."""
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    diff = merge_diff(obj.get("status") or {}, new)
    if not diff:
        return None
    return {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": diff}


def persist(access: ClusterAccess, obj: Obj, status: RolloutStatus) -> Obj | None:
    """Write the status if it changed; the updated object, or None when nothing was written."""
    patch = status_patch(obj, status)
    if patch is None:
        return None
    meta = obj["metadata"]
    return access.patch_status(ROLLOUTS, meta.get("namespace"), meta["name"], patch)
