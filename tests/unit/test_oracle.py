"""The safety oracle (tests/oracle.py) on synthetic histories: each invariant is caught when
violated and quiet when respected."""

from __future__ import annotations

import copy
from typing import Any

from rollout.domain.revision import HASH_LABEL, pod_template_hash
from tests.oracle import Version, Violation, check, report

NS = "t"
Obj = dict[str, Any]

TEMPLATE_V1: Obj = {"metadata": {"labels": {"app": "reviews"}}, "spec": {"image": "v1"}}
TEMPLATE_V2: Obj = {"metadata": {"labels": {"app": "reviews"}}, "spec": {"image": "v2"}}
V1 = pod_template_hash(TEMPLATE_V1)
V2 = pod_template_hash(TEMPLATE_V2)


def rollout(
    template: Obj = TEMPLATE_V2,
    steps: list[Obj] | None = None,
    *,
    host_level: bool = False,
    **status: Any,
) -> Obj:
    istio: Obj = {"virtualServices": [{"name": "reviews", "routes": ["primary"]}]}
    if host_level:
        istio |= {"stableService": "reviews-stable", "canaryService": "reviews-canary"}
    else:
        istio["destinationRule"] = {
            "name": "reviews",
            "stableSubset": "stable",
            "canarySubset": "canary",
        }
    return {
        "kind": "Rollout",
        "metadata": {"name": "reviews", "namespace": NS},
        "spec": {
            "template": copy.deepcopy(template),
            "trafficRouting": {"istio": istio},
            "strategy": {"canary": {"steps": steps if steps is not None else [{"setWeight": 20}]}},
        },
        "status": status,
    }


def vs(
    canary: int, stable: int | None = None, *, extra: list[Obj] | None = None, **route: Any
) -> Obj:
    primary: Obj = {
        "name": "primary",
        "timeout": "10s",
        "route": [
            {
                "destination": {"host": "reviews", "subset": "stable"},
                "weight": 100 - canary if stable is None else stable,
            },
            {"destination": {"host": "reviews", "subset": "canary"}, "weight": canary},
        ],
        **route,
    }
    return {
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": NS, "labels": {"team": "shop"}},
        "spec": {"hosts": ["reviews"], "http": [*(extra or []), primary]},
    }


def dr(stable: str | None = V1, canary: str | None = V1, **spec: Any) -> Obj:
    def subset(name: str, revision: str | None) -> Obj:
        labels = {"app": "reviews"}
        if revision is not None:
            labels[HASH_LABEL] = revision
        return {"name": name, "labels": labels}

    return {
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": NS},
        "spec": {
            "host": "reviews",
            "subsets": [subset("stable", stable), subset("canary", canary)],
            **spec,
        },
    }


def rs(revision: str, available: int) -> Obj:
    return {
        "kind": "ReplicaSet",
        "metadata": {"name": f"reviews-{revision}", "namespace": NS},
        "spec": {"template": {"metadata": {"labels": {"app": "reviews", HASH_LABEL: revision}}}},
        "status": {"availableReplicas": available},
    }


def service(name: str, revision: str | None) -> Obj:
    selector = {"app": "reviews"} | ({HASH_LABEL: revision} if revision else {})
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": selector},
    }


class History:
    """Builds a history: each ``add`` is one write, one resourceVersion, at time ``at``."""

    def __init__(self) -> None:
        self.versions: list[Version] = []
        self.rv = 100
        self.at = 0.0

    def add(
        self, obj: Obj, *, by_test: bool = False, at: float | None = None, type_: str = "MODIFIED"
    ) -> History:
        self.rv += 1
        if at is not None:
            self.at = at
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        meta = obj["metadata"]
        self.versions.append(
            Version(
                self.rv, self.at, type_, obj["kind"], meta["namespace"], meta["name"], obj, by_test
            )
        )
        self.at += 0.01
        return self

    def steady(self, steps: list[Obj] | None = None) -> History:
        """The user's objects and a Healthy v1, then v2's canary available at weight 0."""
        self.add(vs(0), by_test=True, type_="ADDED")
        self.add(dr(None, None), by_test=True, type_="ADDED")
        self.add(rollout(TEMPLATE_V1, steps), by_test=True, type_="ADDED")
        self.add(rs(V1, 3), type_="ADDED")
        self.add(dr(V1, V1))
        healthy: Obj = {"stableRevision": V1, "canaryRevision": V1, "phase": "Healthy"}
        self.add(rollout(TEMPLATE_V1, steps, **healthy))
        self.add(rollout(TEMPLATE_V2, steps, **healthy), by_test=True)
        self.add(rs(V2, 0), type_="ADDED")
        self.add(dr(V1, V2))
        self.add(rs(V2, 1))
        progressing: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Progressing"}
        self.add(rollout(TEMPLATE_V2, steps, **progressing))
        return self

    def check(self, end: float | None = None) -> list[Violation]:
        return check(self.versions, end=end)


def invariants(violations: list[Violation]) -> list[int]:
    return sorted({v.invariant for v in violations})


def test_a_clean_canary_walk_and_promotion_has_no_violation() -> None:
    h = History().steady()
    h.add(vs(20)).add(vs(50))
    h.add(rollout(TEMPLATE_V2, stableRevision=V1, canaryRevision=V2, phase="Paused"))
    h.add(dr(V2, V2)).add(vs(0))
    h.add(rollout(TEMPLATE_V2, stableRevision=V2, canaryRevision=V2, phase="Healthy"))
    h.add(rs(V1, 0))
    assert h.check() == []


# -- 1 -----------------------------------------------------------------------------------------


def test_1_weights_not_summing_to_100_are_caught() -> None:
    found = History().steady().add(vs(20, 70)).check()
    assert invariants(found) == [1], report(found)
    assert "sum to 90" in found[0].message and "route primary" in found[0].message


def test_1_weights_out_of_range_or_not_integers_are_caught() -> None:
    assert invariants(History().steady().add(vs(120, -20)).check()) == [1]
    fractional = vs(20)
    fractional["spec"]["http"][0]["route"][1]["weight"] = 20.0
    fractional["spec"]["http"][0]["route"][0]["weight"] = 80.0
    found = History().steady().add(fractional).check()
    assert invariants(found) == [1] and "not integers" in found[0].message


def test_1_the_tests_own_bad_weights_are_its_input_not_a_violation() -> None:
    h = History().steady().add(vs(20, 70), by_test=True).add(vs(20))
    assert h.check() == []


# -- 2 -----------------------------------------------------------------------------------------


def test_2_the_controller_pointing_a_header_route_at_a_scaled_down_canary_is_caught() -> None:
    header = {
        "name": "testers",
        "route": [{"destination": {"host": "reviews", "subset": "canary"}}],
    }
    h = History().steady(steps=[{"setHeaderRoute": {"name": "testers"}}])
    h.add(vs(0, extra=[header]))  # fine: the canary has a pod
    h.add(rs(V2, 0), at=10.0)  # aborted, scaled down: the header route must go within the grace
    h.add(rollout(TEMPLATE_V2, stableRevision=V1, canaryRevision=V2, phase="Degraded"), at=14.0)
    found = h.check()
    assert invariants(found) == [2], report(found)
    assert "route testers" in found[0].message and "0 available" in found[0].message
    assert "longer than the 2.5s grace" in found[0].message


def test_2_a_write_by_the_controller_to_an_unavailable_revision_is_caught_at_once() -> None:
    h = History().steady()
    h.add(rs(V2, 0), at=10.0)
    h.add(vs(20), at=12.0)  # the controller sends 20% to a canary unavailable for 2 s
    h.add(vs(0), at=12.1)
    found = h.check()
    assert invariants(found) == [2], report(found)
    assert "written by the controller" in found[0].message


def test_2_a_crash_repaired_within_the_grace_is_not_a_violation() -> None:
    h = History().steady().add(vs(20))
    h.add(rs(V2, 0), at=10.0)  # the test makes the canary crash: nobody wrote that state
    h.add(vs(0), at=11.5)  # the controller takes its traffic away within the grace
    assert h.check() == []
    # ... but if it never does, the state that stood is a violation
    late = History().steady().add(vs(20))
    late.add(rs(V2, 0), at=10.0)
    found = late.check(end=20.0)
    assert invariants(found) == [2] and "until the end of the test" in found[0].message


def test_2_a_mirror_and_a_host_level_split_are_judged_too() -> None:
    host_vs = vs(0)
    for entry, host in zip(
        host_vs["spec"]["http"][0]["route"], ("reviews-stable", "reviews-canary"), strict=True
    ):
        entry["destination"] = {"host": host}
    h = History()
    h.add(host_vs, by_test=True, type_="ADDED")
    h.add(service("reviews-stable", None), by_test=True, type_="ADDED")
    h.add(service("reviews-canary", None), by_test=True, type_="ADDED")
    h.add(rollout(TEMPLATE_V1, host_level=True), by_test=True, type_="ADDED")
    h.add(rs(V1, 3), type_="ADDED")
    h.add(service("reviews-stable", V1)).add(service("reviews-canary", V1))
    h.add(rollout(TEMPLATE_V1, host_level=True, stableRevision=V1, phase="Healthy"))
    mirrored = vs(0, mirror={"host": "reviews-canary"}, mirrorPercentage={"value": 50.0})
    for entry, host in zip(
        mirrored["spec"]["http"][0]["route"], ("reviews-stable", "reviews-canary"), strict=True
    ):
        entry["destination"] = {"host": host}
    h.add(rs(V2, 0), type_="ADDED")
    h.add(service("reviews-canary", V2), at=5.0)
    h.add(mirrored, at=7.0)  # mirrors to a canary without pods for 2 s
    found = h.check()
    assert invariants(found) == [2] and "mirror 50%" in found[0].message, report(found)


def test_2_states_before_the_first_healthy_are_not_judged() -> None:
    h = History()
    h.add(vs(0), by_test=True, type_="ADDED")
    h.add(dr(None, None), by_test=True, type_="ADDED")
    h.add(rollout(TEMPLATE_V1), by_test=True, type_="ADDED")
    h.add(rs(V1, 0), type_="ADDED", at=0.0)
    h.add(dr(V1, V1), at=9.0)  # stable has no pod yet, for 9 s: there is nothing to protect yet
    assert h.check(end=20.0) == []


# -- 3 -----------------------------------------------------------------------------------------

FAILED = {"phase": "Failed", "checks": [{"name": "errors", "phase": "Failed", "measurements": []}]}


def test_3_weight_rising_again_after_a_failed_verdict_is_caught() -> None:
    h = History().steady().add(vs(20))
    h.add(
        rollout(
            TEMPLATE_V2, stableRevision=V1, canaryRevision=V2, phase="Progressing", analysis=FAILED
        )
    )
    h.add(vs(50))
    found = h.check()
    assert invariants(found) == [3], report(found)
    assert "sends 50 to revision" in found[0].message and "(was 20)" in found[0].message


def test_3_a_retry_or_a_new_revision_lets_the_weight_rise() -> None:
    h = History().steady().add(vs(20))
    aborted: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Degraded"}
    h.add(rollout(TEMPLATE_V2, **aborted, abort=True, abortReason="AnalysisFailed"))
    h.add(vs(0))
    # the operator retries; the verdict lingers in the status until the controller starts over
    h.add(rollout(TEMPLATE_V2, **aborted, abort=False, abortReason="AnalysisFailed"), by_test=True)
    h.add(vs(20))
    h.add(rollout(TEMPLATE_V2, stableRevision=V1, canaryRevision=V2, phase="Progressing"))
    h.add(vs(50))
    assert h.check() == []
    dry = History().steady().add(vs(20))
    dry_failed = {"phase": "Running", "checks": [{"name": "e", "phase": "Failed", "dryRun": True}]}
    dry.add(rollout(TEMPLATE_V2, stableRevision=V1, canaryRevision=V2, analysis=dry_failed))
    dry.add(vs(50))
    assert dry.check() == []  # a dry-run check's failure is no verdict


# -- 4 -----------------------------------------------------------------------------------------


def test_4_a_changed_user_field_is_caught_with_what_changed() -> None:
    edited = vs(20)
    edited["spec"]["http"][-1]["timeout"] = "1s"
    found = History().steady().add(edited).check()
    assert invariants(found) == [4], report(found)
    assert ".spec.http[0].timeout: 10s -> 1s" in found[0].message


def test_4_a_dropped_user_mirror_and_a_stale_header_route_are_caught() -> None:
    user_mirror: Obj = {"mirror": {"host": "recorder"}, "mirrorPercentage": {"value": 5.0}}
    h = History()
    h.add(vs(0, **user_mirror), by_test=True, type_="ADDED")
    h.add(dr(V1, V1), by_test=True, type_="ADDED")
    h.add(rollout(TEMPLATE_V1, stableRevision=V1, phase="Healthy"), by_test=True, type_="ADDED")
    h.add(rs(V1, 3), type_="ADDED")
    h.add(vs(0, mirror={"host": "reviews", "subset": "canary"}, mirrorPercentage={"value": 50.0}))
    found = h.check()
    assert invariants(found) == [4] and "recorder" in found[0].message, report(found)

    stale = {
        "name": "set-header-1",
        "route": [{"destination": {"host": "reviews", "subset": "canary"}}],
    }
    h = History()
    h.add(vs(0), by_test=True, type_="ADDED")
    h.add(dr(V1, V1), by_test=True, type_="ADDED")
    h.add(rollout(TEMPLATE_V1, steps=[{"setHeaderRoute": {"name": "set-header-1"}}]), by_test=True)
    h.add(vs(0, extra=[stale]))  # fine: the step names it
    h.add(rollout(TEMPLATE_V2, steps=[{"setWeight": 20}]), by_test=True, at=5.0)  # renamed away
    h.add(vs(20, extra=[stale]), at=9.0)  # the controller keeps the stale route
    found = h.check()
    assert invariants(found) == [4] and "set-header-1" in found[0].message, report(found)


def test_4_weights_pins_the_canary_mirror_header_routes_and_own_annotations_may_change() -> None:
    h = History()
    h.add(vs(0), by_test=True, type_="ADDED")
    h.add(
        dr(None, None, trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}), by_test=True, type_="ADDED"
    )
    h.add(rollout(TEMPLATE_V1, steps=[{"setHeaderRoute": {"name": "testers"}}]), by_test=True)
    h.add(dr(V1, V2, trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}))
    header = {
        "name": "testers",
        "route": [{"destination": {"host": "reviews", "subset": "canary"}}],
    }
    owned = vs(
        30,
        extra=[header],
        mirror={"host": "reviews", "subset": "canary"},
        mirrorPercentage={"value": 10.0},
    )
    owned["metadata"]["annotations"] = {"rollout.dev/managed-routes": "testers"}
    h.add(owned)
    assert h.check() == []


def test_4_a_header_route_in_another_namespaces_virtual_service_is_the_controllers() -> None:
    """A Rollout in ``t`` routing through ``reviews.gw`` (``name.namespace``): its header
    route there is its own. (Before, only Rollouts of the VirtualService's namespace counted.)"""

    def in_gw(obj: Obj) -> Obj:
        obj["metadata"]["namespace"] = "gw"
        return obj

    h = History()
    h.add(in_gw(vs(0)), by_test=True, type_="ADDED")
    h.add(dr(None, None), by_test=True, type_="ADDED")
    moved = rollout(TEMPLATE_V1, steps=[{"setHeaderRoute": {"name": "testers"}}])
    moved["spec"]["trafficRouting"]["istio"]["virtualServices"][0]["name"] = "reviews.gw"
    h.add(moved, by_test=True)
    h.add(dr(V1, V2))
    header = {
        "name": "testers",
        "route": [{"destination": {"host": "reviews.t.svc.cluster.local", "subset": "canary"}}],
    }
    h.add(in_gw(vs(30, extra=[header])))
    assert h.check() == []


def test_4_the_tests_own_edit_becomes_the_new_baseline() -> None:
    edited = vs(0)
    edited["spec"]["http"][-1]["timeout"] = "1s"
    h = History().steady().add(edited, by_test=True).add(vs(0) | {"spec": edited["spec"]})
    assert h.check() == []
    deleted = History().steady().add(vs(0), type_="DELETED")
    assert invariants(deleted.check()) == [4]


# -- 5 -----------------------------------------------------------------------------------------


def analysis(*phases: str, dry_run: bool = False) -> Obj:
    measurements = [{"phase": p, "value": 0.1, "at": "2024-01-01T00:00:00Z"} for p in phases]
    return {
        "phase": "Running",
        "checks": [{"name": "errors", "dryRun": dry_run, "measurements": measurements}],
    }


def test_5_promotion_on_an_inconclusive_latest_measurement_is_caught() -> None:
    h = History().steady()
    running: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Progressing"}
    h.add(rollout(TEMPLATE_V2, **running, analysis=analysis("Successful", "Inconclusive")))
    h.add(rollout(TEMPLATE_V2, stableRevision=V2, canaryRevision=V2, phase="Healthy"))
    found = h.check()
    assert invariants(found) == [5], report(found)
    assert "latest measurement Inconclusive" in found[0].message


def test_5_promotion_after_success_dry_run_or_promote_full_is_fine() -> None:
    running: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Progressing"}
    promoted: Obj = {"stableRevision": V2, "canaryRevision": V2, "phase": "Healthy"}
    cases: list[Obj] = [
        {"analysis": analysis("Error", "Successful")},
        {"analysis": analysis("Failed", dry_run=True)},
        {"analysis": analysis("Error"), "promoteFull": True},
    ]
    for extra in cases:
        h = History().steady()
        h.add(rollout(TEMPLATE_V2, **running, **extra))
        h.add(rollout(TEMPLATE_V2, **promoted))
        assert h.check() == [], extra


def test_5_a_promotion_after_the_analysis_was_dropped_from_the_status_is_caught() -> None:
    # A controller that clears status.analysis (or restarts a run) after a Failed measurement
    # and promotes in its next write used to pass: only the previous version was looked at.
    h = History().steady()
    running: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Progressing"}
    h.add(rollout(TEMPLATE_V2, **running, analysis=analysis("Successful", "Failed")))
    h.add(rollout(TEMPLATE_V2, **running))
    h.add(rollout(TEMPLATE_V2, **running, analysis={"phase": "Running", "checks": []}))
    h.add(rollout(TEMPLATE_V2, stableRevision=V2, canaryRevision=V2, phase="Healthy"))
    found = h.check()
    assert invariants(found) == [5], report(found)
    assert "latest measurement Failed" in found[0].message


def test_5_a_later_success_a_retry_or_a_new_revision_clears_the_memory() -> None:
    running: Obj = {"stableRevision": V1, "canaryRevision": V2, "phase": "Progressing"}
    promoted: Obj = {"stableRevision": V2, "canaryRevision": V2, "phase": "Healthy"}
    h = History().steady()
    h.add(rollout(TEMPLATE_V2, **running, analysis=analysis("Inconclusive")))
    h.add(rollout(TEMPLATE_V2, **running))
    h.add(rollout(TEMPLATE_V2, **running, analysis=analysis("Successful")))
    h.add(rollout(TEMPLATE_V2, **promoted))
    assert h.check() == []
    h = History().steady()
    h.add(rollout(TEMPLATE_V2, **running, analysis=analysis("Failed"), abort=True))
    h.add(rollout(TEMPLATE_V2, **running, abort=False))
    h.add(rollout(TEMPLATE_V2, **promoted))
    assert h.check() == []
