"""KubeAccess lists in pages (``limit``/``continue``), as client-go's pager does; HTTP faked by
a local server that pages as the apiserver does (every page at the first page's
resourceVersion), and can expire a continue token (410)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from rollout.cluster.access import SERVICES
from rollout.cluster.kube import KubeAccess

NAMES = [f"svc-{i:02d}" for i in range(12)]


class PagingApi:
    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.expire_token = False

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.queries.append(query)
        start = int(query.get("continue") or 0)
        if query.get("continue") and self.expire_token:
            return 410, {"kind": "Status", "code": 410, "reason": "Expired", "message": "expired"}
        limit = int(query.get("limit") or len(NAMES))
        names = NAMES[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": "100"}  # every page: the first's snapshot
        if start + limit < len(NAMES):
            meta["continue"] = str(start + limit)
        items = [{"metadata": {"name": n, "namespace": "ns"}} for n in names]
        return 200, {"kind": "ServiceList", "apiVersion": "v1", "metadata": meta, "items": items}


@pytest.fixture
def api() -> Iterator[tuple[str, PagingApi]]:
    fake = PagingApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            code, body = fake.answer(query)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


def access(url: str, page: int) -> KubeAccess:
    return KubeAccess(
        client.ApiClient(client.Configuration(host=url)), list_page_size=page, max_backoff=0.01
    )


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_a_list_is_read_in_pages_and_is_the_whole_list(api: tuple[str, PagingApi]) -> None:
    url, fake = api
    items, version = access(url, 5).list(SERVICES, "ns", label_selector="app=x")
    assert names(items) == NAMES
    assert version == "100"
    assert [q.get("limit") for q in fake.queries] == ["5", "5", "5"]
    assert [q.get("continue") for q in fake.queries] == [None, "5", "10"]
    assert all(q.get("labelSelector") == "app=x" for q in fake.queries)
    assert all(i["kind"] == "Service" and i["apiVersion"] == "v1" for i in items)


def test_an_expired_continue_token_falls_back_to_one_full_list(
    api: tuple[str, PagingApi],
) -> None:
    url, fake = api
    fake.expire_token = True
    items, version = access(url, 5).list(SERVICES, "ns")
    assert names(items) == NAMES  # not the first page twice
    assert version == "100"
    assert [(q.get("limit"), q.get("continue")) for q in fake.queries] == [
        ("5", None),
        ("5", "5"),
        (None, None),
    ]


def test_without_a_page_size_one_request_is_made(api: tuple[str, PagingApi]) -> None:
    url, fake = api
    items, _ = access(url, 0).list(SERVICES, "ns")
    assert names(items) == NAMES
    assert fake.queries == [{}]
