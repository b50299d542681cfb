"""The store's indexes answer what a scan of every object answered (issue 14)."""

from __future__ import annotations

import json
import random

from rollout.sandbox.admission import SandboxAdmission
from rollout.sandbox.resources import Registry
from rollout.sandbox.selectors import field_selector, label_selector
from rollout.sandbox.server import EncodedEvents, served
from rollout.sandbox.store import Store


def _store() -> tuple[Store, Registry]:
    registry = Registry()
    store = Store(SandboxAdmission(registry))
    namespaces = registry.lookup("", "v1", "namespaces")
    for ns in ("a", "b", "c"):
        store.create(namespaces, None, {"metadata": {"name": ns}})
    return store, registry


def test_list_by_namespace_and_selector_equals_a_scan() -> None:
    store, registry = _store()
    configmaps = registry.lookup("", "v1", "configmaps")
    rng = random.Random(5)
    for step in range(600):
        ns, name = rng.choice("abc"), f"cm-{rng.randrange(60)}"
        found = store.find(configmaps, ns, name)
        if found is None:
            labels = {"tier": rng.choice(["web", "db"])}
            store.create(configmaps, ns, {"metadata": {"name": name, "labels": labels}})
        elif step % 3 == 0:
            store.delete(configmaps, ns, name)
        else:
            store.mutate(
                configmaps,
                ns,
                name,
                lambda o: {**o, "metadata": {**o["metadata"], "labels": {"tier": "db"}}},
                None,
            )
        everything = sorted(
            (o for k, o in store.all_objects() if k == configmaps.key),
            key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]),
        )
        for namespace in (None, "a", "b", "c", "nope"):
            for selector in (None, "tier=db", "tier!=db"):
                matcher = label_selector(selector)
                expected = [
                    o
                    for o in everything
                    if namespace in (None, o["metadata"]["namespace"])
                    and matcher(o["metadata"].get("labels") or {})
                ]
                items, _ = store.list(configmaps, namespace, matcher, field_selector(None))
                assert items == expected


def test_dependents_and_uid_indexes_follow_owner_references() -> None:
    store, registry = _store()
    configmaps = registry.lookup("", "v1", "configmaps")
    owner = store.create(configmaps, "a", {"metadata": {"name": "owner"}})
    uid = owner["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    for i in range(3):
        store.create(configmaps, "a", {"metadata": {"name": f"d{i}", "ownerReferences": [ref]}})
    assert store.by_uid(uid) == (configmaps.key, owner)
    assert sorted(o["metadata"]["name"] for _, o in store.dependents_of(uid)) == ["d0", "d1", "d2"]
    store.mutate(
        configmaps,
        "a",
        "d1",
        lambda o: {
            **o,
            "metadata": {k: v for k, v in o["metadata"].items() if k != "ownerReferences"},
        },
        None,
    )
    store.delete(configmaps, "a", "d2")
    assert [o["metadata"]["name"] for _, o in store.dependents_of(uid)] == ["d0"]
    assert sorted(o["metadata"]["name"] for _, o in store.in_namespace("a")) == [
        "d0",
        "d1",
        "owner",
    ]
    store.delete(configmaps, "a", "owner")
    assert store.by_uid(uid) is None


def test_a_watch_line_is_encoded_once_and_equals_the_per_watcher_encoding() -> None:
    store, registry = _store()
    configmaps = registry.lookup("", "v1", "configmaps")
    obj = store.create(configmaps, "a", {"metadata": {"name": "x"}, "data": {"k": "é"}})
    events = EncodedEvents(size=2)
    first = events.line("ADDED", obj, configmaps, "v1")
    assert events.line("ADDED", obj, configmaps, "v1") is first
    shown = served(obj, configmaps, "v1")
    assert (
        first
        == json.dumps({"type": "ADDED", "object": shown}, separators=(",", ":")).encode() + b"\n"
    )
    assert events.encoded == 1
    # Another type of event, an equal but distinct object: encoded anew; the oldest goes.
    events.line("DELETED", obj, configmaps, "v1")
    events.line("ADDED", dict(obj), configmaps, "v1")
    assert events.encoded == 3
    events.line("ADDED", obj, configmaps, "v1")
    assert events.encoded == 4


def test_a_status_write_leaves_the_stored_object_it_replaces_unchanged() -> None:
    # Events and watchers (and the shared watch-line cache) hold stored objects: a write must
    # build a new one, the status subresource's included.
    store, registry = _store()
    services = registry.lookup("", "v1", "services")
    old = store.create(
        services, "a", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    )
    held = json.loads(json.dumps(old))
    new = store.update(services, "a", "s", {**old, "status": {"conditions": []}}, "status")
    assert new["metadata"]["resourceVersion"] != held["metadata"]["resourceVersion"]
    assert old == held
