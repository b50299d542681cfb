"""Argo CD's handling of a Lua health check or resource action, emulated for the tests.

Written from reading Argo CD's ``util/lua/lua.go`` and ``server/application/application.go``
(v2.14 to v3.3); none of its code is copied. What Argo CD does with an action:

1. runs the script in gopher-lua (a Lua 5.1 VM) with the live object as the global ``obj``
   (JSON objects and arrays both become tables); here lupa's Lua 5.1 (``run``);
2. encodes the returned table as JSON: a table with keys 1..n is an array, an empty table an
   empty array (``from_lua``);
3. "cleans" the result against the input (``cleanReturnedObj``), because Lua cannot tell an
   empty object from an empty array. Two versions exist (``clean_before_fix`` and
   ``clean_after_fix``); the fix is argo-cd pull request 24136/24137 (issue 6248), released in
   3.0.13 and 3.1.1 (3.1.0, 3.0.12 and every 2.x have the old code);
4. sends the JSON merge patch from the live object to the result, first whole to the
   ``/status`` subresource when it changes ``status``, then without ``status`` to the object
   (``argocd_patches``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lupa import lua51

from rollout.ops import merge_diff

ROOT = Path(__file__).resolve().parents[1]
ROLLOUT = ROOT / "argocd" / "resource_customizations" / "rollout.dev" / "Rollout"
ACTIONS = ROLLOUT / "actions"
HEALTH = ROLLOUT / "health.lua"
DISCOVERY = ACTIONS / "discovery.lua"
# Rollouts as a controller wrote them (tests/integration/test_argocd_controller.py writes them)
CONTROLLER_FIXTURES = ROLLOUT / "testdata" / "controller"
PINNED_TIME = 1767225600  # 2026-01-01T00:00:00Z
ACTION_NAMES = sorted(p.parent.name for p in ACTIONS.glob("*/action.lua"))


ARGOCD_HEALTH = {
    "Healthy": "Healthy",
    "Progressing": "Progressing",
    "Paused": "Suspended",
    "Degraded": "Degraded",
}


def expected_health(rollout: Any) -> str:
    """The Argo CD health status a Rollout should have (docs/gitops.md): Progressing until the
    controller has observed its generation, then its phase's (Paused is Suspended)."""
    status = rollout.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or observed != rollout["metadata"].get("generation"):
        return "Progressing"
    return ARGOCD_HEALTH[status["phase"]]


class ArgoCDPanic(Exception):
    """What Argo CD before the fix does with the result: a Go runtime panic
    (``index out of range [i] with length n``), reported as "Unable to execute resource
    action"; nothing is patched."""


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def from_lua(value: Any) -> Any:
    """A Lua value as Argo CD's JSON encoding of it: a sequence (or an empty table) is a list,
    any other table a dict; whole numbers are ints."""
    if lua51.lua_type(value) == "table":
        items = list(value.items())
        keys = [k for k, _ in items]
        if keys == list(range(1, len(keys) + 1)):
            return [from_lua(v) for _, v in items]
        return {str(k): from_lua(v) for k, v in items}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def run(script: Path, obj: Any, *, now: int | None = PINNED_TIME) -> Any:
    """``script`` run on a copy of ``obj`` (``os.date`` pinned to ``now`` unless None); its
    result as JSON data, before any clean-up."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    if now is not None:
        runtime.execute(
            f"local real = os.date; os.date = function(f, t) return real(f, t or {now}) end"
        )
    runtime.globals()["obj"] = _to_lua(runtime, copy.deepcopy(obj))
    return from_lua(runtime.execute(script.read_text()))


def clean_before_fix(returned: Any, original: Any) -> Any:
    """``cleanReturnedObj`` of Argo CD 2.x, 3.0.0-3.0.12 and 3.1.0, on a copy.

    For each key of the input present in the result: objects recurse; an empty array where the
    input had an object becomes the input's object (its old value); arrays are walked index by
    index over the *result*, looking up the input's element at the same index whenever the
    result's element is an object or an array: past the input's end that lookup panics
    (``ArgoCDPanic``). Keys only in the result are left alone."""
    return _clean(copy.deepcopy(returned), original, fixed=False, path="")


def clean_after_fix(returned: Any, original: Any) -> Any:
    """``cleanReturnedObj`` of Argo CD 3.0.13+, 3.1.1+ and 3.2+, on a copy: as before the fix,
    except that the walk of an array stops at the input's length (elements past it are kept
    as returned) and an empty array where the input had an object becomes an empty object."""
    return _clean(copy.deepcopy(returned), original, fixed=True, path="")


def _clean(new: Any, old: Any, *, fixed: bool, path: str) -> Any:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    for key, old_value in old.items():
        if key not in new:
            continue
        value = new[key]
        where = f"{path}.{key}"
        if isinstance(value, dict) and isinstance(old_value, dict):
            new[key] = _clean(value, old_value, fixed=fixed, path=where)
        elif isinstance(value, list) and isinstance(old_value, dict):
            if not value:
                new[key] = {} if fixed else old_value
        elif isinstance(value, list) and isinstance(old_value, list):
            new[key] = _clean_list(value, old_value, fixed=fixed, path=where)
    return new


def _clean_list(new: list[Any], old: list[Any], *, fixed: bool, path: str) -> list[Any]:
    for i, value in enumerate(new):
        if fixed and i >= len(old):
            break
        if not isinstance(value, dict | list):
            continue
        if i >= len(old):
            raise ArgoCDPanic(
                f"{path}[{i}]: runtime error: index out of range [{i}] with length {len(old)}"
            )
        if isinstance(value, dict) and isinstance(old[i], dict):
            new[i] = _clean(value, old[i], fixed=fixed, path=f"{path}[{i}]")
        elif isinstance(value, list) and isinstance(old[i], list):
            new[i] = _clean_list(value, old[i], fixed=fixed, path=f"{path}[{i}]")
    return new


def grown_arrays(returned: Any, original: Any, path: str = "") -> list[str]:
    """Paths of the arrays in ``returned`` longer than the array at the same path in
    ``original`` (a missing or non-array original counts as length 0)."""
    grown: list[str] = []
    if isinstance(returned, dict):
        base = original if isinstance(original, dict) else {}
        for key, value in returned.items():
            grown += grown_arrays(value, base.get(key), f"{path}.{key}")
    elif isinstance(returned, list):
        base_list = original if isinstance(original, list) else []
        if len(returned) > len(base_list):
            grown.append(f"{path} ({len(base_list)} -> {len(returned)})")
        for i, value in enumerate(returned):
            before = base_list[i] if i < len(base_list) else None
            grown += grown_arrays(value, before, f"{path}[{i}]")
    return grown


def argocd_patches(live: Any, result: Any) -> tuple[Any, Any]:
    """(status patch, object patch) as Argo CD sends them: the merge patch from ``live`` to
    ``result`` whole to ``/status`` when it touches ``status`` (the apiserver keeps only the
    status part), then that patch without ``status`` to the object; None for a patch not sent."""
    diff = merge_diff(live, result) or {}
    status_patch = diff if "status" in diff else None
    rest = {k: v for k, v in diff.items() if k != "status"}
    return status_patch, (rest or None)


def run_action(name: str, live: Any, *, fixed: bool, now: int | None = PINNED_TIME) -> Any:
    """The object Argo CD (after the fix when ``fixed``) patches towards when the action
    ``name`` runs on ``live``; raises ArgoCDPanic where Argo CD would fail the action."""
    returned = run(ACTIONS / name / "action.lua", live, now=now)
    clean = clean_after_fix if fixed else clean_before_fix
    return clean(returned, live)


def compiles(source: str) -> bool:
    """Whether ``source`` compiles in Lua 5.1 (gopher-lua rejects 5.2+ syntax such as goto)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    check = runtime.eval("function(src) return loadstring(src) ~= nil end")
    assert callable(check)
    return bool(check(source))
