"""Sandbox conformance: label and field selectors on list and watch, and watch semantics.

References:
- https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
- https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
  (watch from a resourceVersion, 410 Gone, bookmarks)
- https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch: with a
  label selector, an object whose labels stop matching is delivered as DELETED (the watch
  cache's filtering), one that starts matching as ADDED.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.sandbox.cluster import Sandbox
from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    client_from,
    core_v1,
    custom_objects,
    expect_status,
    labelled_configmap,
    names,
    on_kube,
    preexisting_configmaps,
    stream,
)

pytestmark = pytest.mark.integration

OBJECTS = {
    "c-prod": {"env": "prod", "tier": "web"},
    "c-dev": {"env": "dev", "tier": "web"},
    "c-qa": {"env": "qa"},
    "c-none": {},
    "c-db": {"env": "prod", "tier": "db"},
}

SELECTIONS = {
    "env=prod": {"c-prod", "c-db"},
    "env==dev": {"c-dev"},
    "env!=prod": {"c-dev", "c-qa", "c-none"},
    "env in (dev,qa)": {"c-dev", "c-qa"},
    "env notin (prod)": {"c-dev", "c-qa", "c-none"},
    "tier": {"c-prod", "c-dev", "c-db"},
    "!tier": {"c-qa", "c-none"},
    "env=prod,tier=web": {"c-prod"},
    "env in (prod),!tier": set(),
}


@pytest.fixture
def labelled(api_client: client.ApiClient, namespace: str) -> tuple[str, str]:
    """The OBJECTS in a fresh namespace; the resourceVersion before, for watches."""
    core = core_v1(api_client)
    before = core.list_namespaced_config_map(namespace).metadata.resource_version
    for name, labels in OBJECTS.items():
        core.create_namespaced_config_map(namespace, labelled_configmap(name, labels))
    # Touch each object, in order: for any selection, the touch of its last member is the last
    # event the watch will deliver, so a watch can stop there knowing it missed nothing.
    for name in OBJECTS:
        core.patch_namespaced_config_map(name, namespace, {"data": {"touched": "1"}})
    return namespace, before


def _selected(selector: str) -> set[str]:
    """What ``selector`` lists in a ``labelled`` namespace: its OBJECTS, and the namespace's
    own ConfigMaps (a real cluster's ``kube-root-ca.crt``, which has no labels) wherever the
    selection takes an object without labels (``c-none``)."""
    chosen = SELECTIONS[selector]
    return chosen | (preexisting_configmaps() if "c-none" in chosen else set())


@pytest.mark.parametrize("selector", list(SELECTIONS))
def test_label_selector_on_list(
    api_client: client.ApiClient, labelled: tuple[str, str], selector: str
) -> None:
    namespace, _ = labelled
    core = core_v1(api_client)
    items = core.list_namespaced_config_map(namespace, label_selector=selector)
    assert {i.metadata.name for i in items.items} == _selected(selector)
    everywhere = core.list_config_map_for_all_namespaces(
        label_selector=selector, field_selector=f"metadata.namespace={namespace}"
    )
    assert {i.metadata.name for i in everywhere.items} == _selected(selector)


@pytest.mark.parametrize("selector", [s for s, chosen in SELECTIONS.items() if chosen])
def test_label_selector_on_watch(
    api_client: client.ApiClient, labelled: tuple[str, str], selector: str
) -> None:
    namespace, before = labelled
    chosen = SELECTIONS[selector]
    last = [n for n in OBJECTS if n in chosen][-1]
    events = stream(
        core_v1(api_client).list_namespaced_config_map,
        namespace,
        label_selector=selector,
        resource_version=before,
        until=lambda evs: evs[-1][0] == "MODIFIED" and evs[-1][1]["metadata"]["name"] == last,
    )
    order = [n for n in OBJECTS if n in chosen]
    assert names(events, "ADDED") == order
    assert names(events, "MODIFIED") == order
    assert len(events) == 2 * len(order)


def test_field_selector_on_list_and_watch(
    api_client: client.ApiClient, labelled: tuple[str, str]
) -> None:
    namespace, before = labelled
    core = core_v1(api_client)
    items = core.list_namespaced_config_map(namespace, field_selector="metadata.name=c-qa").items
    assert [i.metadata.name for i in items] == ["c-qa"]
    items = core.list_namespaced_config_map(
        namespace, field_selector="metadata.name!=c-qa,metadata.namespace=" + namespace
    ).items
    assert {i.metadata.name for i in items} == set(OBJECTS) - {"c-qa"} | preexisting_configmaps()
    events = stream(
        core.list_namespaced_config_map,
        namespace,
        field_selector="metadata.name=c-qa",
        resource_version=before,
        until=lambda evs: evs[-1][0] == "MODIFIED",
    )
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "c-qa"),
        ("MODIFIED", "c-qa"),
    ]


def test_bad_selectors_are_400(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    body = expect_status(
        lambda: core.list_namespaced_config_map(namespace, field_selector="data.k=v"),
        400,
        "BadRequest",
    )
    # kube-apiserver's message for a type with only the default selectable fields.
    assert body["message"] == (
        '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    # A type with selectable fields of its own, and a custom resource, say it otherwise.
    body = expect_status(
        lambda: core.list_namespaced_secret(namespace, field_selector="data.k=v"), 400, "BadRequest"
    )
    assert body["message"] == "field label not supported: data.k"
    body = expect_status(
        lambda: custom_objects(api_client).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", field_selector="spec.replicas=1"
        ),
        400,
        "BadRequest",
    )
    assert body["message"] == "field label not supported: spec.replicas"
    expect_status(
        lambda: stream(
            core.list_namespaced_config_map,
            namespace,
            field_selector="spec.foo=bar",
            until=lambda evs: True,
        ),
        400,
        "BadRequest",
    )
    expect_status(
        lambda: core.list_namespaced_config_map(namespace, label_selector="a in (x"),
        400,
        "BadRequest",
    )


def test_watch_from_a_resource_version_sends_only_newer_events(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    created = [
        core.create_namespaced_config_map(namespace, {"metadata": {"name": n}})
        for n in ("w1", "w2", "w3")
    ]
    after_second = created[1].metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w4"}})
    events = stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=after_second,
        until=lambda evs: names(evs)[-1] == "w4",
    )
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "w3"), ("ADDED", "w4")]
    assert events[0][1]["metadata"]["resourceVersion"] == created[2].metadata.resource_version


def test_a_status_write_leaves_the_replayed_history_as_it_was(
    api_client: client.ApiClient, namespace: str
) -> None:
    # A watch from an older resourceVersion replays each event as it was: the ADDED event of an
    # object carries the version it was created with, even after a status write changed it
    # (the sandbox's status writes shared the stored object's metadata and bumped its version in
    # place, so the replayed ADDED showed the later version).
    core = core_v1(api_client)
    before = core.list_namespaced_service(namespace).metadata.resource_version
    created = core.create_namespaced_service(
        namespace, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    )
    body = api_client.sanitize_for_serialization(created)  # type: ignore[no-untyped-call]
    condition = {
        "type": "Probed",
        "status": "True",
        "reason": "Test",
        "message": "a status write",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    body["status"] = {"conditions": [condition]}
    written = core.replace_namespaced_service_status("s", namespace, body)
    assert written.metadata.resource_version != created.metadata.resource_version
    events = stream(
        core.list_namespaced_service,
        namespace,
        resource_version=before,
        until=lambda evs: len(evs) == 2,
    )
    assert [(t, o["metadata"]["resourceVersion"]) for t, o in events] == [
        ("ADDED", created.metadata.resource_version),
        ("MODIFIED", written.metadata.resource_version),
    ]


def test_watch_without_resource_version_starts_with_the_current_state(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    for n in ("s1", "s2"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": n}})
    core.delete_namespaced_config_map("s1", namespace)
    current = sorted({"s2"} | preexisting_configmaps())
    events = stream(
        core.list_namespaced_config_map, namespace, until=lambda evs: len(evs) == len(current)
    )
    assert sorted((t, o["metadata"]["name"]) for t, o in events) == [
        ("ADDED", name) for name in current
    ]


def test_watch_honours_timeout_seconds(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    started = time.monotonic()
    events = stream(core.list_namespaced_config_map, namespace, timeout=1, until=lambda e: False)
    elapsed = time.monotonic() - started
    # Only the current state (the namespace's own ConfigMaps), then nothing until the timeout.
    assert sorted(names(events, "ADDED")) == sorted(preexisting_configmaps())
    assert len(events) == len(preexisting_configmaps())
    assert 0.9 <= elapsed < 3.0, elapsed


def test_watch_sends_bookmarks(api_client: client.ApiClient, namespace: str) -> None:
    """A watch with ``allowWatchBookmarks`` gets BOOKMARK events while nothing changes.

    kube-apiserver's watch cache sends one about once a minute (its bookmark frequency); the
    sandbox every second (a deliberate difference, docs/sandbox.md), so that its tests are fast.
    """
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "b"}})
    started = time.monotonic()
    events = stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=cm.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout=90 if on_kube() else 4,
        until=lambda evs: evs[-1][0] == "BOOKMARK",
    )
    elapsed = time.monotonic() - started
    assert events and events[-1][0] == "BOOKMARK", events
    assert [t for t, _ in events] == ["BOOKMARK"], events
    assert elapsed < (89.0 if on_kube() else 3.0), elapsed
    bookmark = events[-1][1]
    assert bookmark["kind"] == "ConfigMap" and bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(cm.metadata.resource_version)
    # Without allowWatchBookmarks, none are sent.
    quiet = stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=cm.metadata.resource_version,
        timeout=2,
        until=lambda evs: False,
    )
    assert quiet == []


def test_selection_changes_during_a_watch(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, labelled_configmap("m", {"pick": "yes"}))
    core.create_namespaced_config_map(namespace, labelled_configmap("n", {"pick": "no"}))
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"pick": "no"}}})
    core.patch_namespaced_config_map("n", namespace, {"metadata": {"labels": {"pick": "yes"}}})
    core.patch_namespaced_config_map("n", namespace, {"data": {"more": "1"}})
    core.delete_namespaced_config_map("m", namespace)  # no longer selected: not seen
    core.delete_namespaced_config_map("n", namespace)
    events = stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="pick=yes",
        resource_version=start,
        until=lambda evs: evs[-1][0] == "DELETED" and names(evs)[-1] == "n",
    )
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "m"),
        ("DELETED", "m"),  # relabelled out of the selection
        ("ADDED", "n"),  # relabelled into it
        ("MODIFIED", "n"),
        ("DELETED", "n"),
    ]
    # The DELETED for a relabelled object carries its last selected state (the watch cache
    # sends the previous object), at the version of the change.
    assert events[1][1]["metadata"]["labels"] == {"pick": "yes"}
    assert int(events[1][1]["metadata"]["resourceVersion"]) > int(
        events[0][1]["metadata"]["resourceVersion"]
    )


# -- 410 Gone: a sandbox with a short history ----------------------------------------------


@pytest.fixture
def short_history(tmp_path: Path) -> Iterator[client.ApiClient]:
    """A second sandbox, in this process, keeping only 10 events; still reached over HTTP."""
    sandbox = Sandbox(history=10, crds=tmp_path)  # no CRDs: fast start
    sandbox.start()
    kubeconfig = tmp_path / "kubeconfig"
    sandbox.write_kubeconfig(kubeconfig)
    try:
        yield client_from(str(kubeconfig))
    finally:
        sandbox.stop()


def test_watch_from_a_compacted_version_is_410_gone(short_history: client.ApiClient) -> None:
    core = core_v1(short_history)
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "old"}})
    for i in range(20):
        core.patch_namespaced_config_map("old", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as info:
        stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=first.metadata.resource_version,
            until=lambda evs: True,
        )
    assert info.value.status == 410
    assert "Expired" in str(info.value.reason) and "too old resource version" in str(
        info.value.reason
    )
    # A recent version is still served.
    latest = core.read_namespaced_config_map("old", "default").metadata.resource_version
    core.patch_namespaced_config_map("old", "default", {"data": {"i": "last"}})
    events = stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=latest,
        until=lambda evs: True,
    )
    assert [(t, o["data"]["i"]) for t, o in events] == [("MODIFIED", "last")]
