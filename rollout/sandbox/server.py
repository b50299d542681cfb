"""The emulator's HTTP front: Kubernetes REST paths, discovery, JSON bodies, chunked watch.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1
keep-alive): no dependency, and the official client keeps one pooled connection per thread, so
a thread per connection costs little. Paths, verbs, query parameters and error bodies are those
of the Kubernetes API; what the emulator does not support answers with a clear Status (never a
silent success): server-side apply, pagination (``limit``/``continue``).

What kubectl needs besides: ``/openapi/v2`` and ``/openapi/v3`` (``openapi.py``), Table responses
for ``Accept: ...;as=Table;g=meta.k8s.io`` (``tables.py``), ``dryRun=All`` (every check, nothing
stored) and ``fieldValidation`` (``Strict``: unknown fields are a 400 ``strict decoding error``;
``Warn``: a ``Warning`` header per unknown field; absent or ``Ignore``: not checked, which keeps
the plain write paths as fast as before — a real apiserver's default is ``Warn``).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollout.sandbox.errors import ApiError, PageNotFound, bad_request, invalid, method_not_allowed
from rollout.sandbox.openapi import OpenApi, unknown_fields
from rollout.sandbox.patch import PatchError, apply_patch
from rollout.sandbox.resources import Registry, ResourceType
from rollout.sandbox.selectors import TYPE_FIELDS, field_selector, label_selector
from rollout.sandbox.store import Obj, Store
from rollout.sandbox.tables import table, wants_table

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
    as_table: str | None = None  # the includeObject of a Table watch, "" for its default


@dataclass
class Raw:
    """A body already encoded (the OpenAPI documents)."""

    code: int
    data: bytes
    content_type: str = "application/json"


Reply = tuple[int, Obj] | Stream | Raw


@dataclass
class Options:
    """A request's write options: ``dryRun`` and ``fieldValidation``; where warnings go."""

    dry_run: bool = False
    field_validation: str = ""
    warnings: list[str] | None = None


OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}
FIELD_VALIDATIONS = ("", "Ignore", "Warn", "Strict")


class EncodedEvents:
    """Watch event lines, encoded once per (event, type, apiVersion) and shared by every watcher.

    Stored objects are never mutated (see ``store``), so an object's encoding stays true while
    the object lives; each entry holds its object, so its ``id`` cannot be reused while cached,
    and a hit is also checked by identity. Bounded: the oldest entries go first. The bytes are
    exactly what encoding per watcher produced: ``{"type":...,"object":...}`` and a newline.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lines: dict[tuple[int, str, str], tuple[Obj, bytes]] = {}
        self._lock = threading.Lock()
        self.encoded = 0  # how many lines were encoded (the rest were shared): for tests

    def line(self, type_: str, obj: Obj, rtype: ResourceType, version: str) -> bytes:
        """The watch line for ``obj`` as ``version`` presents it (ADDED/MODIFIED/DELETED)."""
        key = (id(obj), type_, rtype.api_version(version))
        with self._lock:
            hit = self._lines.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        shown = served(obj, rtype, version)
        data = json.dumps({"type": type_, "object": shown}, separators=(",", ":")).encode()
        data += b"\n"
        with self._lock:
            self.encoded += 1
            self._lines[key] = (obj, data)
            while len(self._lines) > self.size:
                del self._lines[next(iter(self._lines))]
        return data


class Api:
    """Maps one request to store calls. Independent of the HTTP server, for clarity."""

    def __init__(self, store: Store, registry: Registry, *, bookmark_every: float = 1.0):
        self.store = store
        self.registry = registry
        self.bookmark_every = bookmark_every
        self.openapi = OpenApi(registry)
        self.events = EncodedEvents()

    # -- routing --------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        raw_path: str,
        headers: Any,
        body: bytes,
        warnings: list[str] | None = None,
    ) -> Reply:
        """One request's reply; ``warnings`` collects the ``Warning`` headers to send."""
        url = urlsplit(raw_path)
        multi = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}
        parts = [p for p in url.path.split("/") if p]
        if method == "GET":
            if parts and parts[0] == "openapi":
                return self._openapi(parts, headers)
            discovery = self._discovery(parts)
            if discovery is not None:
                return 200, discovery
        options = Options(warnings=warnings)
        if "dryRun" in multi or "fieldValidation" in multi:
            options = self._options(method, multi, warnings)
        target = self._target(parts)
        if (
            target.sub not in (None, "status", "scale")
            or (target.sub == "status" and not target.rtype.status)
            or (target.sub == "scale" and target.rtype.scale is None)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        table_of = (
            query.get("includeObject", "")
            if method == "GET" and wants_table(headers.get("Accept"))
            else None
        )
        if target.name is None:
            reply = self._collection(method, target, query, body, options)
        else:
            reply = self._object(method, target, query, headers, body, options)
        if table_of is None or target.sub == "scale":
            return reply
        if isinstance(reply, Stream):
            reply.as_table = table_of
            return reply
        if isinstance(reply, tuple) and reply[0] == 200:
            obj = reply[1]
            items = obj["items"] if target.name is None else [obj]
            rv = obj["metadata"].get("resourceVersion")
            return 200, table(target.rtype, items, rv, table_of or None)
        return reply

    def _options(
        self, method: str, multi: dict[str, list[str]], warnings: list[str] | None
    ) -> Options:
        """``dryRun`` and ``fieldValidation``, checked as the apiserver's handlers check them."""
        kind = OPTIONS_KIND.get(method, "DeleteOptions")
        dry = multi.get("dryRun") or []
        if any(v != "All" for v in dry):
            values = ", ".join(f'"{v}"' for v in dry)
            raise invalid(
                "meta.k8s.io",
                kind,
                "",
                [
                    (
                        "dryRun",
                        "FieldValueNotSupported",
                        f'Unsupported value: []string{{{values}}}: supported values: "All"',
                    )
                ],
            )
        validation = (multi.get("fieldValidation") or [""])[-1]
        if validation not in FIELD_VALIDATIONS:
            raise invalid(
                "meta.k8s.io",
                kind,
                "",
                [
                    (
                        "fieldValidation",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{validation}": supported values: "Ignore", '
                        '"Strict", "Warn"',
                    )
                ],
            )
        return Options(bool(dry), validation, warnings)

    def _check_fields(self, t: Target, obj: Any, options: Options) -> None:
        """Strict decoding's unknown-field check (only asked for with ``fieldValidation``)."""
        if options.field_validation not in ("Strict", "Warn"):
            return
        unknown = unknown_fields(t.rtype, t.version, obj)
        if not unknown:
            return
        listed = [f'unknown field "{path}"' for path in unknown]
        if options.field_validation == "Strict":
            kind = t.rtype.kind
            raise bad_request(
                f'{kind} in version "{t.version}" cannot be handled as a {kind}: strict '
                f"decoding error: {', '.join(listed)}"
            )
        if options.warnings is not None:
            options.warnings.extend(listed)

    def _openapi(self, parts: list[str], headers: Any) -> Reply:
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        accept = headers.get("Accept") or "*/*"
        json_ok = any(
            m.split(";")[0].strip() in ("application/json", "*/*", "application/*", "")
            for m in accept.split(",")
        )
        if parts == ["openapi", "v2"]:
            if not json_ok:
                raise ApiError(
                    406,
                    "NotAcceptable",
                    "the rollout sandbox serves /openapi/v2 as application/json only",
                )
            return Raw(200, self.openapi.v2_document())
        if parts == ["openapi", "v3"]:
            return 200, self.openapi.v3_index()
        if len(parts) > 2 and parts[1] == "v3":
            document = self.openapi.v3_document("/".join(parts[2:]))
            if document is None:
                raise not_found
            return Raw(200, document)
        raise not_found

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
                raise PageNotFound()
            return {"kind": "APIGroup", "apiVersion": "v1", **group}
        if len(parts) == 3 and parts[0] == "apis":
            if not self.registry.built_in_group(parts[1]):
                try:
                    return self.registry.resource_list(parts[1], parts[2])
                except ApiError:
                    raise PageNotFound() from None
            return self.registry.resource_list(parts[1], parts[2])
        return None

    def _target(self, parts: list[str]) -> Target:
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[:1] == ["api"] or (
            parts[:1] == ["apis"]
            and self.registry.built_in_group(parts[1] if len(parts) > 1 else "")
        ):
            raise not_found
        else:
            raise PageNotFound()
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

    def _collection(
        self, method: str, t: Target, query: dict[str, str], body: bytes, options: Options
    ) -> Reply:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(
            query.get("fieldSelector"),
            TYPE_FIELDS.get(t.rtype.key, {} if t.rtype.custom else None),
        )
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
            new = _typed(parse_json(body), t)
            self._check_fields(t, new, options)
            created = self.store.create(t.rtype, t.namespace, new, dry_run=options.dry_run)
            return 201, served(created, t.rtype, t.version)
        if method == "DELETE":
            dry_run = options.dry_run or _body_dry_run(body, "DeleteOptions")
            items, _ = self.store.list(t.rtype, t.namespace, labels, fields)
            for item in items:
                meta = item["metadata"]
                try:
                    self.store.delete(t.rtype, meta.get("namespace"), meta["name"], dry_run=dry_run)
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
        self,
        method: str,
        t: Target,
        query: dict[str, str],
        headers: Any,
        body: bytes,
        options: Options,
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
                obj = self._put_scale(t, new, options.dry_run)
            else:
                self._check_fields(t, new, options)
                obj = self.store.update(rtype, ns, name, new, t.sub, dry_run=options.dry_run)
            return 200, self._shape(obj, t)
        if method == "PATCH":
            content_type = headers.get("Content-Type", "")
            if len(body) == 0:
                raise bad_request("the body of a patch must not be empty")
            if t.sub == "scale":
                obj = self._patch_scale(t, body, content_type, options.dry_run)
            else:

                def change(old: Obj) -> Obj:
                    patched = patch(old, body, content_type, rtype)
                    self._check_fields(t, patched, options)
                    return patched

                obj = self.store.mutate(rtype, ns, name, change, t.sub, dry_run=options.dry_run)
            return 200, self._shape(obj, t)
        if method == "DELETE":
            delete_options = parse_json(body) if body.strip() else {}
            if not isinstance(delete_options, dict):
                raise bad_request("the body of a delete must be a DeleteOptions object")
            propagation = query.get("propagationPolicy") or delete_options.get("propagationPolicy")
            obj = self.store.delete(
                rtype,
                ns,
                name,
                propagation=propagation or "Background",
                preconditions=delete_options.get("preconditions"),
                dry_run=options.dry_run or _body_dry_run(body, "DeleteOptions"),
            )
            return 200, served(obj, rtype, t.version)
        raise method_not_allowed(f"{method} is not supported on an object")

    def _shape(self, obj: Obj, t: Target) -> Obj:
        if t.sub == "scale":
            return scale_of(obj, t.rtype)
        return served(obj, t.rtype, t.version)

    def _put_scale(self, t: Target, scale: Obj, dry_run: bool) -> Obj:
        assert t.name is not None and t.rtype.scale is not None
        replicas = (scale.get("spec") or {}).get("replicas")
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        return self._set_replicas(t, replicas, wanted_rv, dry_run)

    def _patch_scale(self, t: Target, body: bytes, content_type: str, dry_run: bool) -> Obj:
        assert t.name is not None
        current = scale_of(self.store.get(t.rtype, t.namespace, t.name), t.rtype)
        patched = patch(current, body, content_type, None)
        replicas = (patched.get("spec") or {}).get("replicas")
        return self._set_replicas(
            t, replicas, (patched.get("metadata") or {}).get("resourceVersion"), dry_run
        )

    def _set_replicas(self, t: Target, replicas: Any, wanted_rv: Any, dry_run: bool) -> Obj:
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

        return self.store.mutate(t.rtype, t.namespace, t.name, change, None, dry_run=dry_run)


def _body_dry_run(body: bytes, kind: str) -> bool:
    """Whether a DeleteOptions body asks for ``dryRun: ["All"]`` (other values: 422)."""
    if not body.strip():
        return False
    options = parse_json(body)
    if not isinstance(options, dict) or not options.get("dryRun"):
        return False
    values = options["dryRun"]
    if values != ["All"]:
        shown = ", ".join(f'"{v}"' for v in values) if isinstance(values, list) else values
        raise invalid(
            "meta.k8s.io",
            kind,
            "",
            [
                (
                    "dryRun",
                    "FieldValueNotSupported",
                    f'Unsupported value: []string{{{shown}}}: supported values: "All"',
                )
            ],
        )
    return True


def _typed(body: Any, t: Target) -> Any:
    """The handlers' check of a create or update body against the URL's group/version/kind."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    expected = t.rtype.api_version(t.version)
    kind = t.rtype.kind
    api_version, body_kind = body.get("apiVersion") or "", body.get("kind") or ""
    if t.rtype.custom:
        # apiextensions-apiserver: a 400 for the version, a 422 on the field for the kind.
        if api_version not in ("", expected):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({expected})"
            )
        if body_kind not in ("", kind):
            name = str((body.get("metadata") or {}).get("name", ""))
            cause = ("kind", "FieldValueInvalid", f'Invalid value: "{body_kind}": must be {kind}')
            raise invalid(t.rtype.group, str(body_kind), name, [cause])
        return body
    # A built-in type: the apiserver's scheme decodes the body's group/version/kind, then
    # converts it to the URL's type; both failures are 400s with the decoder's message.
    if api_version not in ("", expected) or body_kind not in ("", kind):
        shown = str(body_kind or kind)
        version = str(api_version or t.version).rpartition("/")[2]
        if api_version not in ("", expected):
            why = (
                f'no kind "{shown}" is registered for version "{api_version}" in scheme '
                '"pkg/runtime/scheme.go:110"'
            )
        else:
            internal = (t.rtype.group.split(".")[0] or "core") if t.rtype.group else "core"
            why = f"converting ({version}.{shown}) to ({internal}.{kind}): unknown conversion"
        raise bad_request(f'{shown} in version "{version}" cannot be handled as a {kind}: {why}')
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
        # kube-apiserver v1.34 sends a JSON patch that cannot apply as 422 Invalid with the
        # generic message and empty details: the underlying error (``error.cause``) stays here.
        raise ApiError(error.code, error.reason, error.message) from None


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
        warnings: list[str] = []
        try:
            body = self._body()
            reply = self.api.handle(method, self.path, self.headers, body, warnings)
        except PageNotFound:
            self._send_bytes(404, PageNotFound.TEXT, "text/plain; charset=utf-8", None)
            return
        except ApiError as error:
            self._send(error.code, error.body())
            return
        except Exception:  # never a crash or a hung connection: a 500 Status instead
            traceback.print_exc(file=sys.stderr)
            self._send(500, ApiError(500, "InternalError", "internal error in the sandbox").body())
            return
        if isinstance(reply, Stream):
            self._stream(reply)
        elif isinstance(reply, Raw):
            self._send_bytes(reply.code, reply.data, reply.content_type, warnings)
        else:
            self._send(*reply, warnings=warnings)

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

    def _send(self, code: int, body: Obj, warnings: list[str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._send_bytes(code, data, "application/json", warnings)

    def _send_bytes(
        self, code: int, data: bytes, content_type: str, warnings: list[str] | None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for warning in warnings or ():
            # RFC 7234 warn-code 299, agent "-", the text as a quoted-string (as the apiserver).
            quoted = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{quoted}"')
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one send (end_headers would send the headers on their own).
        buffer: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]  # stdlib's
        buffer.append(b"\r\n")
        buffer.append(data)
        self.flush_headers()

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
        # Chunks wait here until the store's FLUSH (the end of a batch of events): one send
        # per batch, not per event. Each event's line is encoded once for all watchers.
        pending: list[bytes] = []
        try:
            for type_, obj in stream.events:
                if type_ == "IDLE":
                    if pending:
                        self.wfile.write(b"".join(pending))
                        pending = []
                    if self._client_gone():
                        return
                    continue
                if type_ == "FLUSH":
                    if pending:
                        self.wfile.write(b"".join(pending))
                        pending = []
                    continue
                if stream.as_table is None and type_ not in ("ERROR", "BOOKMARK"):
                    data = self.api.events.line(type_, obj, stream.rtype, stream.version)
                else:
                    shown = (
                        obj
                        if type_ in ("ERROR", "BOOKMARK")
                        else served(obj, stream.rtype, stream.version)
                    )
                    if stream.as_table is not None and type_ not in ("ERROR", "BOOKMARK"):
                        rv = obj["metadata"].get("resourceVersion")
                        shown = table(stream.rtype, [shown], rv, stream.as_table or None)
                    line = json.dumps({"type": type_, "object": shown}, separators=(",", ":"))
                    data = line.encode() + b"\n"
                pending.append(b"%x\r\n%s\r\n" % (len(data), data))
                if type_ in ("ERROR", "BOOKMARK"):
                    self.wfile.write(b"".join(pending))
                    pending = []
            pending.append(b"0\r\n\r\n")
            self.wfile.write(b"".join(pending))
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
