"""ClusterAccess over the official ``kubernetes`` client: the only module that imports it.

Requests go through the client's own HTTP stack (configuration, auth, TLS from the
kubeconfig or the in-cluster service account) as plain JSON: objects stay dicts, never the
client's generated models, which would cost time and drop fields they do not know. Transient
failures (429, 5xx, timeouts, connection errors) are retried with bounded exponential backoff
(tenacity, here and nowhere else); anything else becomes a typed ``ClusterError`` at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from tenacity import (
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity import Retrying as _Retrying

from rollout.cluster.access import (
    EVENTS,
    BadConfig,
    ClusterError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    Unavailable,
    WatchEvent,
)

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
RETRY_CODES = frozenset({429, 500, 502, 503, 504})


class _Transient(Exception):
    """A failure worth another try."""

    def __init__(self, error: ClusterError) -> None:
        super().__init__(str(error))
        self.error = error


def load_api_client(
    kubeconfig: str | None = None, context: str | None = None, *, http_retries: bool = True
) -> client.ApiClient:
    """In-cluster config when running in a pod and no kubeconfig is named; else kubeconfig
    (``--kubeconfig``, then ``KUBECONFIG``, then ``~/.kube/config``).

    ``http_retries=False`` turns off urllib3's own retries (by default 3 more tries of a
    request, each with the whole timeout: a server that accepts connections and never answers
    then holds a request for four timeouts), for callers that retry with a budget themselves.
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=True,
        )
    if not http_retries:
        configuration.retries = False
    return client.ApiClient(configuration)


class KubeAccess:
    """``before_write(what)``, when given, runs right before every attempt of every request
    that is not a GET (retries included) and may raise a ``ClusterError`` to stop it from
    being sent: the controller passes its leader-election fence (``fence.WriteFence.check``).
    ``field_manager``, when given, names every POST, PUT and PATCH (``fieldManager``);
    ``reporting_instance``, when given, is each Event's ``reportingInstance`` (which controller
    process recorded it: with several shards, the one that owns the Rollout).
    ``list_page_size``: objects per page of a list (0: one reply)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        attempts: int = 5,
        max_backoff: float = 2.0,
        budget: float = 10.0,
        request_timeout: float = 30.0,
        before_write: Callable[[str], None] | None = None,
        field_manager: str | None = None,
        reporting_instance: str | None = None,
        list_page_size: int = 500,
    ) -> None:
        self.api = api_client
        self.list_page_size = list_page_size
        self.field_manager = field_manager
        self.reporting_instance = reporting_instance
        self.attempts = attempts
        self.max_backoff = max_backoff
        self.budget = budget
        self.request_timeout = request_timeout
        self.before_write = before_write

    # -- HTTP -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = None,
    ) -> Any:
        """One request; its parsed JSON body. Raises _Transient or a ClusterError."""
        if self.before_write is not None and method != "GET":
            self.before_write(f"{method} {path}")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.field_manager is not None and method in ("POST", "PUT", "PATCH"):
            # The name in managedFields, and in the conflict a server-side apply of a field we
            # wrote reports (docs/gitops.md); the client's default is its User-Agent.
            query = {**(query or {}), "fieldManager": self.field_manager}
        _, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            reply = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                _request_timeout=timeout or self.request_timeout,
            )
            data = reply.read()
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _Transient(Unavailable(f"{method} {path}: {error}")) from error
        except ApiException as error:
            raise _Transient(Unavailable(f"{method} {path}: {error.reason}")) from error
        if 200 <= reply.status < 300:
            return json.loads(data) if data else {}
        failure = _error(reply.status, data, f"{method} {path}")
        if reply.status in RETRY_CODES:
            raise _Transient(failure)
        raise failure

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        retrying = _Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.budget),
            wait=wait_exponential(multiplier=0.05, max=self.max_backoff) + wait_random(0, 0.05),
            reraise=False,
        )
        try:
            return retrying(self._send, method, path, **kwargs)
        except RetryError as error:
            last = error.last_attempt.exception()
            if isinstance(last, _Transient):
                raise last.error from None
            raise

    # -- ClusterAccess ----------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        result: Obj = self._request("GET", res.path(namespace, name))
        return result

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        """Every object, and the list's resourceVersion.

        Read in pages of ``list_page_size`` (``limit``/``continue``), as client-go's pager
        does: the API serves all pages from one snapshot (the first page's resourceVersion),
        and no single reply holds 10,000 objects, which would cost their whole JSON text on
        top of the objects. A continue token that expired meanwhile (410) is answered with one
        full list, as client-go falls back. A server that does not page answers everything at
        once, without a token, and that is the list.
        """
        base = {"labelSelector": label_selector} if label_selector else {}
        items: Objs = []
        version = ""
        token = ""
        while True:
            query = dict(base)
            if self.list_page_size:
                query["limit"] = str(self.list_page_size)
            if token:
                query["continue"] = token
            try:
                result = self._request("GET", res.path(namespace), query=query or None)
            except Gone:
                if not token:
                    raise
                result = self._request("GET", res.path(namespace), query=base or None)
                items, token = [], ""
            page = result.get("items") or []
            for item in page:  # a list's items omit apiVersion/kind; restore them for callers
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
            items.extend(page)
            meta = result.get("metadata") or {}
            if not version or not token:
                version = str(meta.get("resourceVersion", ""))
            token = str(meta.get("continue") or "")
            if not token:
                return items, version

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        result: Obj = self._request("POST", res.path(namespace), body=body)
        return result

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        result: Obj = self._request("PUT", res.path(namespace, name), body=body)
        return result

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        result: Obj = self._request(
            "PATCH",
            res.path(namespace, name),
            body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )
        return result

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        content_type = PATCH_CONTENT_TYPES["json" if isinstance(patch, list) else "merge"]
        result: Obj = self._request(
            "PATCH", res.path(namespace, name) + "/status", body=patch, content_type=content_type
        )
        return result

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self._request("DELETE", res.path(namespace, name))

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream; with
        ``label_selector``, only of the objects it selects (an object whose labels stop
        matching comes as DELETED, one that starts matching as ADDED, as the API sends them).

        Raises ``Gone`` when the version is too old (list again), ``Unavailable`` when the
        stream cannot be opened or breaks.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        method, url, headers, _, _ = self.api.param_serialize(
            "GET",
            res.path(namespace),
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            reply = self.api.call_api(
                method, url, header_params=headers, _request_timeout=(10, timeout_seconds + 30)
            )
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as error:
            raise Unavailable(f"watch {res.plural}: {error}") from error
        stream = reply.response
        try:
            if reply.status != 200:
                raise _error(reply.status, stream.read(), f"watch {res.plural}")
            for line in iter_resp_lines(stream):
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise _error(int(obj.get("code", 500)), json.dumps(obj).encode(), "watch")
                yield WatchEvent(kind, obj)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise Unavailable(f"watch {res.plural} broke: {error}") from error
        finally:
            stream.release_conn()

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        meta = involved.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = meta.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        if self.reporting_instance:
            body["reportingInstance"] = self.reporting_instance[:128]  # the API's limit
        self.create(EVENTS, namespace, body)


def _error(status: int, data: bytes, what: str) -> ClusterError:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    detail = str(body.get("message") or data[:200].decode(errors="replace") or status)
    message = f"{what}: {detail}"
    reason = str(body.get("reason", ""))
    if status == 404:
        return NotFound(message, code=status, reason=reason, detail=detail)
    if status == 409:
        return Conflict(message, code=status, reason=reason, detail=detail)
    if status == 410:
        return Gone(message, code=status, reason=reason, detail=detail)
    if status == 422:
        return Invalid(message, causes=(body.get("details") or {}).get("causes"), detail=detail)
    if status == 403:
        return Forbidden(message, code=status, reason=reason, detail=detail)
    if status in RETRY_CODES:
        return Unavailable(message, code=status, reason=reason, detail=detail)
    return ClusterError(message, code=status, reason=reason, detail=detail)


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# Seconds a command-line request may take (connect, send, the whole reply): an API server that
# accepts connections and never answers is "unreachable" (exit 3) after this long, not a hang.
CLI_REQUEST_TIMEOUT = 10.0


def connect_cli(
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    *,
    attempts: int = 3,
    budget: float = 5.0,
) -> tuple[KubeAccess, str]:
    """A ``KubeAccess`` for a command-line tool, and the namespace to use, as kubectl picks
    them: ``--kubeconfig``, else ``KUBECONFIG`` (a list of paths), else ``~/.kube/config``, else
    in-cluster; ``--context`` else the current context; ``-n`` else the context's namespace,
    else ``default``. A kubeconfig that cannot be read or used is a ``BadConfig`` that names
    its path (``--kubeconfig /nope: no such file``); a ``KUBECONFIG`` list may name missing
    files, as for kubectl, as long as one exists.
    """
    env = os.environ.get("KUBECONFIG") or None
    where = "--kubeconfig" if kubeconfig else "KUBECONFIG" if env else None
    kubeconfig = kubeconfig or env
    in_cluster = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    shown = kubeconfig or "~/.kube/config"
    if not in_cluster:
        _check_kubeconfig_exists(kubeconfig, where)
    try:
        if in_cluster:
            api_client = load_api_client(None, context, http_retries=False)
            if namespace is None:
                try:
                    with open(SERVICE_ACCOUNT_NAMESPACE) as file:
                        namespace = file.read().strip() or None
                except OSError:
                    namespace = None
        else:
            api_client = load_api_client(kubeconfig, context, http_retries=False)
            if namespace is None:
                namespace = context_namespace(kubeconfig, context)
    except ClusterError:
        raise
    except config.ConfigException as error:
        raise BadConfig(f"bad kubeconfig {shown}: {error}") from error
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as error:
        raise BadConfig(f"bad kubeconfig {shown}: {error}") from error
    access = KubeAccess(
        api_client,
        attempts=attempts,
        budget=budget,
        max_backoff=0.5,
        request_timeout=CLI_REQUEST_TIMEOUT,
    )
    return access, namespace or "default"


def _check_kubeconfig_exists(kubeconfig: str | None, where: str | None) -> None:
    """Raise ``BadConfig`` naming the path when the kubeconfig to read does not exist: every
    path of a ``KUBECONFIG`` list (kubectl skips the missing ones), the ``--kubeconfig`` file,
    or ``~/.kube/config`` when neither is set and not in a pod."""
    if kubeconfig is None:
        default = os.path.expanduser("~/.kube/config")
        if not os.path.exists(default):
            raise BadConfig(
                f"no kubeconfig: {default} does not exist (set --kubeconfig or KUBECONFIG)"
            )
        return
    paths = [p for p in kubeconfig.split(os.pathsep) if p] if where == "KUBECONFIG" else []
    if where != "KUBECONFIG":
        paths = [kubeconfig]
    if not any(os.path.exists(os.path.expanduser(p)) for p in paths):
        names = ", ".join(paths) or repr(kubeconfig)
        raise BadConfig(f"kubeconfig {names} (from {where}): no such file")


def context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace of the kubeconfig's ``context`` (default: its current context)."""
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
        if chosen is None:
            raise BadConfig(f"context {context!r} not found in the kubeconfig")
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None
