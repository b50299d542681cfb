"""The Argo CD health check and resource actions in argocd/resource_customizations, run the way
Argo CD's own test harness runs them: each health_test.yaml / action_test.yaml case loads its
testdata YAML into the Lua global ``obj``, runs the script in Lua 5.1 (Argo CD runs gopher-lua,
a Lua 5.1 VM) and compares the result with the expected status/message or object.

Conversions follow Argo CD's: a JSON array becomes a Lua sequence; a returned empty table is
an empty JSON array unless the input had an object at that path (Argo CD's cleanReturnedObj).
``os.date`` is pinned to 2026-01-01T00:00:00Z so that ``pause`` has a stable expected output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "argocd" / "resource_customizations"
ROLLOUT = CUSTOMIZATIONS / "rollout.dev" / "Rollout"
ACTIONS = ROLLOUT / "actions"
PINNED_TIME = 1767225600  # 2026-01-01T00:00:00Z


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def _from_lua(runtime: Any, value: Any) -> Any:
    if lua51.lua_type(value) == "table":
        items = list(value.items())
        keys = [k for k, _ in items]
        if keys == list(range(1, len(keys) + 1)):  # a sequence; empty: an array, as gopher-json
            return [_from_lua(runtime, v) for _, v in items]
        return {str(k): _from_lua(runtime, v) for k, v in items}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def _clean(returned: Any, original: Any) -> Any:
    """Argo CD's cleanReturnedObj: an empty table where the input had an object stays one."""
    if isinstance(returned, list) and not returned and isinstance(original, dict):
        return {}
    if isinstance(returned, dict) and isinstance(original, dict):
        return {k: _clean(v, original.get(k)) for k, v in returned.items()}
    if isinstance(returned, list) and isinstance(original, list):
        return [
            _clean(v, original[i] if i < len(original) else None) for i, v in enumerate(returned)
        ]
    return returned


def _run(script: Path, obj: Any) -> Any:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute(
        f"local real = os.date; os.date = function(f, t) return real(f, t or {PINNED_TIME}) end"
    )
    runtime.globals()["obj"] = _to_lua(runtime, obj)
    result = runtime.execute(script.read_text())
    return _clean(_from_lua(runtime, result), obj)


HEALTH_CASES = _load(ROLLOUT / "health_test.yaml")["tests"]
ACTION_TESTS = _load(ACTIONS / "action_test.yaml")
ACTION_CASES = ACTION_TESTS["actionTests"]
DISCOVERY_CASES = ACTION_TESTS["discoveryTests"]
ACTION_NAMES = sorted(p.name for p in ACTIONS.iterdir() if (p / "action.lua").is_file())


@pytest.mark.parametrize("case", HEALTH_CASES, ids=lambda c: str(c["inputPath"]))
def test_health(case: dict[str, Any]) -> None:
    obj = _load(ROLLOUT / case["inputPath"])
    result = _run(ROLLOUT / "health.lua", obj)
    assert result == case["healthStatus"]


@pytest.mark.parametrize("case", ACTION_CASES, ids=lambda c: f"{c['action']}:{c['inputPath']}")
def test_action(case: dict[str, Any]) -> None:
    obj = _load(ACTIONS / case["inputPath"])
    result = _run(ACTIONS / case["action"] / "action.lua", obj)
    assert result == _load(ACTIONS / case["expectedOutputPath"])


@pytest.mark.parametrize("case", DISCOVERY_CASES, ids=lambda c: str(c["inputPath"]))
def test_discovery(case: dict[str, Any]) -> None:
    obj = _load(ACTIONS / case["inputPath"])
    result = _run(ACTIONS / "discovery.lua", obj)
    got = {name: bool(action.get("disabled", False)) for name, action in result.items()}
    expected = {a["name"]: bool(a.get("disabled", False)) for a in case["result"]}
    assert got == expected


def test_every_action_is_discovered_and_tested() -> None:
    obj = _load(ACTIONS / "testdata" / "progressing.yaml")
    assert sorted(_run(ACTIONS / "discovery.lua", obj)) == ACTION_NAMES
    assert ACTION_NAMES == sorted(["promote", "promote-full", "abort", "retry", "pause", "resume"])
    assert {c["action"] for c in ACTION_CASES} == set(ACTION_NAMES)


def test_every_testdata_file_is_used() -> None:
    used = {ROLLOUT / c["inputPath"] for c in HEALTH_CASES}
    used |= {ACTIONS / c["inputPath"] for c in ACTION_CASES + DISCOVERY_CASES}
    used |= {ACTIONS / c["expectedOutputPath"] for c in ACTION_CASES}
    files = set((ROLLOUT / "testdata").glob("*.yaml")) | set((ACTIONS / "testdata").glob("*.yaml"))
    assert files == used


def test_scripts_are_lua_5_1() -> None:
    """No Lua 5.2+ syntax (goto, //, bit operators) that gopher-lua would reject: every script
    compiles in Lua 5.1."""
    for script in ROLLOUT.rglob("*.lua"):
        runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
        compile_lua = runtime.eval("function(src) return loadstring(src) ~= nil end")
        assert callable(compile_lua)
        assert compile_lua(script.read_text()) is True, script
        assert compile_lua("goto x") is False  # 5.2 syntax: rejected
