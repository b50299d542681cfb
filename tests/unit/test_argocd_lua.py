"""The Argo CD health check and resource actions in argocd/resource_customizations, run the way
Argo CD runs them (``tests/argocd_lua.py``): each health_test.yaml / action_test.yaml case
loads its testdata YAML into the Lua global ``obj``, runs the script in Lua 5.1 (Argo CD runs
gopher-lua, a Lua 5.1 VM), cleans an action's result with Argo CD's ``cleanReturnedObj`` as
it was before its fix (2.x, 3.0.0-3.0.12, 3.1.0) and after it (3.0.13+, 3.1.1+), and compares
with the expected status/message or object.

Argo CD before the fix panics on an action result with an array longer than the input's
(argo-cd issue 6248): no action may grow an array, whatever the Rollout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd_lua import (
    ACTION_NAMES,
    ACTIONS,
    CONTROLLER_FIXTURES,
    DISCOVERY,
    HEALTH,
    ROLLOUT,
    ArgoCDPanic,
    clean_after_fix,
    clean_before_fix,
    compiles,
    expected_health,
    grown_arrays,
    run,
    run_action,
)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


HEALTH_CASES = _load(ROLLOUT / "health_test.yaml")["tests"]
ACTION_TESTS = _load(ACTIONS / "action_test.yaml")
ACTION_CASES = ACTION_TESTS["actionTests"]
DISCOVERY_CASES = ACTION_TESTS["discoveryTests"]
HAND_WRITTEN = sorted((ROLLOUT / "testdata").glob("*.yaml")) + sorted(
    (ACTIONS / "testdata").glob("*.yaml")
)
# Written from a controller's output by tests/integration/test_argocd_controller.py, which also
# checks that they stay states the controller reaches.
FROM_CONTROLLER = sorted(CONTROLLER_FIXTURES.glob("*.yaml"))
FIXTURES = HAND_WRITTEN + FROM_CONTROLLER
ARGOCD = {"before-fix": False, "after-fix": True}


@pytest.mark.parametrize("case", HEALTH_CASES, ids=lambda c: str(c["inputPath"]))
def test_health(case: dict[str, Any]) -> None:
    obj = _load(ROLLOUT / case["inputPath"])
    assert run(HEALTH, obj) == case["healthStatus"]


@pytest.mark.parametrize("fixture", FROM_CONTROLLER, ids=lambda p: p.name)
def test_health_of_what_the_controller_wrote(fixture: Path) -> None:
    obj = _load(fixture)
    health = run(HEALTH, obj)
    assert health["status"] == expected_health(obj)
    if obj["status"].get("observedGeneration") == obj["metadata"]["generation"]:
        assert health["message"] == obj["status"]["message"]
    else:
        assert health["message"] == "Waiting for the controller to observe the rollout's generation"


def test_the_controller_fixtures_cover_every_phase() -> None:
    statuses = {expected_health(_load(f)) for f in FROM_CONTROLLER}
    assert statuses == {"Healthy", "Progressing", "Suspended", "Degraded"}
    assert len(FROM_CONTROLLER) >= 7


@pytest.mark.parametrize("fixed", ARGOCD.values(), ids=ARGOCD.keys())
@pytest.mark.parametrize("case", ACTION_CASES, ids=lambda c: f"{c['action']}:{c['inputPath']}")
def test_action(case: dict[str, Any], fixed: bool) -> None:
    obj = _load(ACTIONS / case["inputPath"])
    result = run_action(case["action"], obj, fixed=fixed)
    assert result == _load(ACTIONS / case["expectedOutputPath"])


@pytest.mark.parametrize("case", DISCOVERY_CASES, ids=lambda c: str(c["inputPath"]))
def test_discovery(case: dict[str, Any]) -> None:
    obj = _load(ACTIONS / case["inputPath"])
    result = run(DISCOVERY, obj)
    got = {name: bool(action.get("disabled", False)) for name, action in result.items()}
    expected = {a["name"]: bool(a.get("disabled", False)) for a in case["result"]}
    assert got == expected


@pytest.mark.parametrize("action", ACTION_NAMES)
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: str(p.relative_to(ROLLOUT)))
def test_no_action_grows_an_array(action: str, fixture: Path) -> None:
    """Every action on every Rollout of the fixtures: no array of the result is longer than
    in the input, and Argo CD before the fix accepts the result (no panic)."""
    obj = _load(fixture)
    returned: Any = run(ACTIONS / action / "action.lua", obj)
    assert grown_arrays(returned, obj) == []
    assert clean_before_fix(returned, obj) == clean_after_fix(returned, obj)


def test_an_appended_pause_condition_panics_before_the_fix_only() -> None:
    """The emulated clean-up: what `pause` used to return (a PausedByUser condition appended to
    a step's) fails before the fix, and is patched as returned after it."""
    obj = _load(ACTIONS / "testdata" / "paused-step.yaml")
    appended = _load(ACTIONS / "testdata" / "paused-step-and-user.yaml")
    assert grown_arrays(appended, obj) == [".status.pauseConditions (1 -> 2)"]
    with pytest.raises(ArgoCDPanic, match=r"index out of range \[1\] with length 1"):
        clean_before_fix(appended, obj)
    assert clean_after_fix(appended, obj) == appended
    # Scalars past the end are never looked up: no panic.
    assert clean_before_fix({"a": [1, 2]}, {"a": [1]}) == {"a": [1, 2]}


def test_an_emptied_object_is_kept_before_the_fix_and_emptied_after() -> None:
    """Lua's one empty table: an empty array where the input had an object is the input's
    object before the fix, an empty object after it."""
    obj = {"spec": {"selector": {"matchLabels": {"app": "a"}}, "pause": {}}}
    returned: dict[str, Any] = {"spec": {"selector": [], "pause": []}}
    assert clean_before_fix(returned, obj) == obj
    assert clean_after_fix(returned, obj) == {"spec": {"selector": {}, "pause": {}}}


def test_every_action_is_discovered_and_tested() -> None:
    obj = _load(ACTIONS / "testdata" / "progressing.yaml")
    assert sorted(run(DISCOVERY, obj)) == ACTION_NAMES
    expected = ["promote", "promote-full", "abort", "retry", "pause", "resume"]
    assert ACTION_NAMES == sorted([*expected, "restart", "skip-current-step"])
    assert {c["action"] for c in ACTION_CASES} == set(ACTION_NAMES)


def test_every_testdata_file_is_used() -> None:
    used = {ROLLOUT / c["inputPath"] for c in HEALTH_CASES}
    used |= {ACTIONS / c["inputPath"] for c in ACTION_CASES + DISCOVERY_CASES}
    used |= {ACTIONS / c["expectedOutputPath"] for c in ACTION_CASES}
    assert set(FIXTURES) == used


def test_health_cases_use_the_controller_output_for_every_phase() -> None:
    """Only the states no controller writes (no status, no message) are written by hand."""
    hand = {c["inputPath"] for c in HEALTH_CASES if not c["inputPath"].startswith("testdata/c")}
    assert hand == {"testdata/no-status.yaml", "testdata/healthy-no-message.yaml"}


def test_scripts_are_lua_5_1() -> None:
    """No Lua 5.2+ syntax (goto, //, bit operators) that gopher-lua would reject: every script
    compiles in Lua 5.1."""
    assert compiles("goto x") is False  # 5.2 syntax: rejected
    for script in ROLLOUT.rglob("*.lua"):
        assert compiles(script.read_text()) is True, script
