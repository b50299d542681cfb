"""The safety oracle's wiring on the sandbox: writes by the test's own client are the user's,
writes by any other client (the controller's) are judged."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.controller_helpers import (
    ISTIO_GROUP,
    ISTIO_VERSION,
    Cluster,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.sandbox_helpers import client_from, core_v1, custom_objects
from tests.oracle_watch import OracleWatch, WriteLog

pytestmark = pytest.mark.integration


def edit_timeout(api: client.ApiClient, namespace: str, timeout: str) -> None:
    custom = custom_objects(api)
    vs = custom.get_namespaced_custom_object(
        ISTIO_GROUP, ISTIO_VERSION, namespace, "virtualservices", "reviews"
    )
    vs["spec"]["http"][1]["timeout"] = timeout
    custom.replace_namespaced_custom_object(
        ISTIO_GROUP, ISTIO_VERSION, namespace, "virtualservices", "reviews", vs
    )


def test_the_oracle_tells_the_tests_writes_from_another_clients(
    api_client: client.ApiClient,
    namespace: str,
    sandbox_kubeconfig: Path,
    test_writes: WriteLog,
) -> None:
    watch = OracleWatch(api_client, [namespace], test_writes).start()
    cluster = Cluster(api_client, namespace)
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}]))
    edit_timeout(api_client, namespace, "9s")  # the user's own edit: the new baseline
    # A namespace the test creates is watched from its creation on.
    other = f"{namespace}-gw"
    core_v1(api_client).create_namespace({"metadata": {"name": other}})
    cluster.create_istio("virtualservices", virtual_service(), namespace=other)
    assert other in watch.recorder.namespaces
    assert watch.verify("wiring::users-own-edits") == []
    assert any(v.namespace == other for v in watch.history())

    watch = OracleWatch(api_client, [namespace], test_writes).start()
    edit_timeout(client_from(str(sandbox_kubeconfig)), namespace, "1s")  # someone else
    found = watch.verify("wiring::someone-else")
    assert [v.invariant for v in found] == [4], OracleWatch.failure("wiring", found)
    assert "timeout: 9s -> 1s" in found[0].message
