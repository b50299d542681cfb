"""The emulator's HTTP front: Kubernetes REST paths, discovery, JSON bodies, chunked watch.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1
keep-alive): no dependency, and the official client keeps one pooled connection per thread, so
a thread per connection costs little. Paths, verbs, query parameters and error bodies are those
of the Kubernetes API; what the emulator does not support answers with a clear Status (never a
silent success): server-side apply, ``dryRun``, pagination (``limit``/``continue``).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollout.sandbox.errors import ApiError, bad_request, method_not_allowed
from rollout.sandbox.patch import PatchError, apply_patch
from rollout.sandbox.resources import Registry, ResourceType
from rollout.sandbox.selectors import field_selector, label_selector
from rollout.sandbox.store import Obj, Store

MAX_BODY = 3 * 1024 * 1024  # the apiserver's request body limit
DEFAULT_WATCH_TIMEOUT = 1800.0
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-rollout-sandbox",
    "gitCommit": "sandbox",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class Target:
    """A parsed resource path."""

    rtype: ResourceType
    version: str
    namespace: str | None
    name: str | None
    sub: str | None
    watch: bool


@dataclass
class Stream:
    events: Iterator[tuple[str, Obj]]
    version: str
    rtype: ResourceType


Reply = tuple[int, Obj] | Stream


class Api:
    """Maps one request to store calls. Independent of the HTTP server, for clarity."""

    def __init__(self, store: Store, registry: Registry, *, bookmark_every: float = 1.0):
        self.store = store
        self.registry = registry
        self.bookmark_every = bookmark_every

    # -- routing --------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        if method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return 200, discovery
        if query.get("dryRun"):
            raise bad_request("dryRun is not supported by the rollout sandbox")
        target = self._target(parts)
        if (
            target.sub not in (None, "status", "scale")
            or (target.sub == "status" and not target.rtype.status)
            or (target.sub == "scale" and target.rtype.scale is None)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if target.name is None:
            return self._collection(method, target, query, body)
        return self._object(method, target, query, headers, body)

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            return dict(VERSION)
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                ],
            }
        if parts == ["apis"]:
            return self.registry.api_group_list()
        if len(parts) == 2 and parts[0] == "api":
            return self.registry.resource_list("", parts[1])
        if len(parts) == 2 and parts[0] == "apis":
            groups = self.registry.api_group_list()["groups"]
            group = next((g for g in groups if g["name"] == parts[1]), None)
            if group is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIGroup", "apiVersion": "v1", **group}
        if len(parts) == 3 and parts[0] == "apis":
            return self.registry.resource_list(parts[1], parts[2])
        return None

    def _target(self, parts: list[str]) -> Target:
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found
        watch = bool(rest) and rest[0] == "watch"
        if watch:
            rest = rest[1:]
        namespace = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise not_found
        rtype = self.registry.lookup(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        if name is not None and rtype.namespaced and namespace is None:
            raise not_found
        if namespace is not None and not rtype.namespaced:
            raise not_found
        return Target(rtype, version, namespace, name, rest[2] if len(rest) > 2 else None, watch)

    # -- collections ------------------------------------------------------------------------

    def _collection(self, method: str, t: Target, query: dict[str, str], body: bytes) -> Reply:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"))
        if method == "GET":
            if t.watch or query.get("watch") in ("true", "1"):
                return self._watch(t, query, labels, fields)
            if query.get("limit") or query.get("continue"):
                # Honest rather than wrong: the whole list is returned, which a client that
                # follows `continue` handles (no continue token is set).
                pass
            items, rv = self.store.list(t.rtype, t.namespace, labels, fields)
            return 200, {
                "kind": f"{t.rtype.kind}List",
                "apiVersion": t.rtype.api_version(t.version),
                "metadata": {"resourceVersion": str(rv)},
                "items": [served(o, t.rtype, t.version) for o in items],
            }
        if method == "POST":
            if t.rtype.namespaced and t.namespace is None:
                raise method_not_allowed("create needs a namespace in the path")
            created = self.store.create(t.rtype, t.namespace, _typed(parse_json(body), t))
            return 201, served(created, t.rtype, t.version)
        if method == "DELETE":
            items, _ = self.store.list(t.rtype, t.namespace, labels, fields)
            for item in items:
                meta = item["metadata"]
                try:
                    self.store.delete(t.rtype, meta.get("namespace"), meta["name"])
                except ApiError as error:
                    if error.code != 404:
                        raise
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        raise method_not_allowed(f"{method} is not supported on a collection")

    def _watch(self, t: Target, query: dict[str, str], labels: Any, fields: Any) -> Stream:
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        events = self.store.watch(
            t.rtype,
            t.namespace,
            query.get("resourceVersion"),
            labels,
            fields,
            timeout=timeout,
            bookmark_every=self.bookmark_every if bookmarks else None,
        )
        return Stream(events, t.version, t.rtype)

    # -- objects ----------------------------------------------------------------------------

    def _object(
        self, method: str, t: Target, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        assert t.name is not None
        rtype, ns, name = t.rtype, t.namespace, t.name
        if method == "GET":
            obj = self.store.get(rtype, ns, name)
            return 200, self._shape(obj, t)
        if method == "PUT":
            new = parse_json(body)
            if t.sub != "scale":
                new = _typed(new, t)
            if t.sub == "scale":
                obj = self._put_scale(t, new)
            else:
                obj = self.store.update(rtype, ns, name, new, t.sub)
            return 200, self._shape(obj, t)
        if method == "PATCH":
            content_type = headers.get("Content-Type", "")
            if len(body) == 0:
                raise bad_request("the body of a patch must not be empty")
            if t.sub == "scale":
                obj = self._patch_scale(t, body, content_type)
            else:

                def change(old: Obj) -> Obj:
                    return patch(old, body, content_type, rtype)

                obj = self.store.mutate(rtype, ns, name, change, t.sub)
            return 200, self._shape(obj, t)
        if method == "DELETE":
            options = parse_json(body) if body.strip() else {}
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            obj = self.store.delete(
                rtype,
                ns,
                name,
                propagation=propagation or "Background",
                preconditions=options.get("preconditions"),
            )
            return 200, served(obj, rtype, t.version)
        raise method_not_allowed(f"{method} is not supported on an object")

    def _shape(self, obj: Obj, t: Target) -> Obj:
        if t.sub == "scale":
            return scale_of(obj, t.rtype)
        return served(obj, t.rtype, t.version)

    def _put_scale(self, t: Target, scale: Obj) -> Obj:
        assert t.name is not None and t.rtype.scale is not None
        replicas = (scale.get("spec") or {}).get("replicas")
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        return self._set_replicas(t, replicas, wanted_rv)

    def _patch_scale(self, t: Target, body: bytes, content_type: str) -> Obj:
        assert t.name is not None
        current = scale_of(self.store.get(t.rtype, t.namespace, t.name), t.rtype)
        patched = patch(current, body, content_type, None)
        replicas = (patched.get("spec") or {}).get("replicas")
        return self._set_replicas(
            t, replicas, (patched.get("metadata") or {}).get("resourceVersion")
        )

    def _set_replicas(self, t: Target, replicas: Any, wanted_rv: Any) -> Obj:
        assert t.name is not None and t.rtype.scale is not None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{t.name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas}: must be greater than or equal to 0",
            )
        path = t.rtype.scale.spec_replicas.lstrip(".").split(".")

        def change(old: Obj) -> Obj:
            new: Obj = json.loads(json.dumps(old))
            if wanted_rv:
                new["metadata"]["resourceVersion"] = wanted_rv
            node = new
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = replicas
            return new

        return self.store.mutate(t.rtype, t.namespace, t.name, change, None)


def _typed(body: Any, t: Target) -> Any:
    """The handlers' check of a create or update body against the URL's group/version/kind."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    expected = t.rtype.api_version(t.version)
    if body.get("apiVersion") not in (None, "", expected):
        raise bad_request(
            f"the API version in the data ({body['apiVersion']}) does not match the expected API "
            f"version ({expected})"
        )
    if body.get("kind") not in (None, "", t.rtype.kind):
        raise bad_request(
            f"the kind of the object ({body['kind']}) does not match the resource ({t.rtype.kind})"
        )
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(
            f"the body of the request could not be decoded as JSON: {error}"
        ) from None


def patch(old: Obj, body: bytes, content_type: str, rtype: ResourceType | None) -> Obj:
    try:
        return apply_patch(old, body, content_type, strategic=rtype is None or rtype.strategic)
    except PatchError as error:
        details = (
            {"causes": [{"reason": "UnexpectedServerResponse", "message": error.cause}]}
            if error.cause
            else {}
        )
        raise ApiError(error.code, error.reason, error.message, details) from None


def served(obj: Obj, rtype: ResourceType, version: str) -> Obj:
    """The object as the asked-for version presents it (same schema in every version)."""
    api_version = rtype.api_version(version)
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


def _path_value(obj: Obj, path: str | None) -> Any:
    if not path:
        return None
    node: Any = obj
    for part in path.lstrip(".").split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def scale_of(obj: Obj, rtype: ResourceType) -> Obj:
    """The ``autoscaling/v1`` Scale view of an object with a scale subresource."""
    assert rtype.scale is not None
    meta = obj["metadata"]
    if rtype.strategic:  # built-in apps types: the selector is spec.selector
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels") or {}
        selector_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    else:
        selector_text = _path_value(obj, rtype.scale.label_selector) or ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": _path_value(obj, rtype.scale.spec_replicas) or 0},
        "status": {
            "replicas": _path_value(obj, rtype.scale.status_replicas) or 0,
            "selector": selector_text,
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rollout-sandbox"
    # An idle keep-alive connection is closed after this long; a watch is not affected.
    timeout = 120
    api: Api  # set on the subclass made by make_server
    quiet = True

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        if not self.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._body()
            reply = self.api.handle(method, self.path, self.headers, body)
        except ApiError as error:
            self._send(error.code, error.body())
            return
        except Exception:  # never a crash or a hung connection: a 500 Status instead
            traceback.print_exc(file=sys.stderr)
            self._send(500, ApiError(500, "InternalError", "internal error in the sandbox").body())
            return
        if isinstance(reply, Stream):
            self._stream(reply)
        else:
            self._send(*reply)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(411, "LengthRequired", "send the request body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise bad_request("invalid Content-Length") from None
        if length > MAX_BODY:
            # The body is not read: the connection must close after the answer.
            self.close_connection = True
            raise ApiError(413, "RequestEntityTooLarge", "the request body is larger than 3 MiB")
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, stream: Stream) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        # One watch per connection, and said so: without the header a client would return the
        # connection to its pool after the stream ends, and its next request could race our
        # close of it (RemoteDisconnected).
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for type_, obj in stream.events:
                if type_ == "IDLE":
                    if self._client_gone():
                        return
                    continue
                shown = (
                    obj
                    if type_ in ("ERROR", "BOOKMARK")
                    else served(obj, stream.rtype, stream.version)
                )
                line = json.dumps({"type": type_, "object": shown}, separators=(",", ":"))
                data = line.encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except OSError:
            return True


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(api: Api, port: int = 0, host: str = "127.0.0.1") -> SandboxServer:
    handler = type("BoundHandler", (Handler,), {"api": api})
    return SandboxServer((host, port), handler)
