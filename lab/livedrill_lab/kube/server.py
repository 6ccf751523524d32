"""The lab's Kubernetes REST API over HTTP/1.1 on 127.0.0.1 (standard library only).

Serves discovery (legacy, which kubectl falls back to when aggregated discovery is answered with plain
`application/json`), CRUD, merge/JSON/strategic patches, watches as chunked JSON lines, Tables for
`kubectl get`, and the lab's own endpoints under /lab/v1 (freezes, faults, compaction).
"""

from __future__ import annotations

import json
import re
import select
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from livedrill_lab.kube import errors, patch, resources, selectors
from livedrill_lab.kube.faults import FaultBook, FaultRule
from livedrill_lab.kube.resources import ResourceType
from livedrill_lab.kube.store import Store
from livedrill_lab.kube.tables import render_table

Obj = dict[str, Any]
SERVER_VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.0-livedrill-lab", "gitCommit": "",
                  "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "",
                  "compiler": "python", "platform": "linux/amd64"}
# A watch without timeoutSeconds ends after this long, as the apiserver's own (randomised) limit does.
DEFAULT_WATCH_TIMEOUT_S = 1800.0
MAX_BODY_BYTES = 8 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10.0


class LabHooks(Protocol):
    """What the simulated KubeVirt components answer for the server."""

    def evict(self, namespace: str, pod: str, body: Obj) -> Obj: ...

    def cancel_evacuation(self, namespace: str, vmi: str, body: Obj) -> Obj: ...

    def migrate_vm(self, namespace: str, vm: str, body: Obj) -> Obj: ...

    def freezes(self) -> list[Obj]: ...


class LabApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, hooks: LabHooks, token: str,
                 tls: ssl.SSLContext | None = None):
        super().__init__(address, _Handler)
        self.tls = tls
        self.store = store
        self.hooks = hooks
        self.token = token
        self.faults = FaultBook()
        self.stopping = threading.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake runs in the request's own thread, so a slow client never blocks accept()."""
        if self.tls is not None:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


_CORE_PREFIX = "/api/v1"
_GROUP_RE = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)(?P<rest>/.*)?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the client's delayed ACK costs ~40 ms a request.
    disable_nagle_algorithm = True
    server: LabApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # requests are not logged: the lab's test runs would drown in them

    # ------------------------------------------------------------------ plumbing

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

    def _send_json(self, code: int, body: Any, extra_headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_error(self, error: errors.ApiError) -> None:
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
        self._send_json(error.code, error.status(), headers)

    def _read_raw_body(self) -> bytes:
        """Read the whole body first, so an early error answer leaves the kept-alive connection in sync."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise errors.ApiError(413, "RequestEntityTooLarge", "request body too large")
        return self.rfile.read(length) if length else b""

    def _read_body(self) -> Any:
        if not self._raw_body:
            return None
        try:
            return json.loads(self._raw_body)
        except json.JSONDecodeError as exc:
            raise errors.bad_request(f"the body is not JSON: {exc}") from exc

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._raw_body = b""
        try:
            self._raw_body = self._read_raw_body()
            if url.path in ("/healthz", "/livez", "/readyz"):
                self._send_plain(200, "ok")
                return
            if self.headers.get("Authorization", "") != f"Bearer {self.server.token}":
                raise errors.ApiError(401, "Unauthorized", "Unauthorized")
            if not url.path.startswith("/lab/") and self._apply_fault(method, url.path):
                return
            self._route(method, url.path.rstrip("/") or "/", query)
        except errors.ApiError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a lab bug: answer like the apiserver does, and keep the traceback in the log
            traceback.print_exc()
            self.close_connection = True
            self._send_error(errors.ApiError(500, "InternalError", "internal error in the lab's API server"))

    def _send_plain(self, code: int, text: str) -> None:
        payload = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _apply_fault(self, method: str, path: str) -> bool:
        rule = self.server.faults.take(method, path)
        if rule is None:
            return False
        if rule.delay_ms:
            time.sleep(rule.delay_ms / 1000.0)
        if rule.status is None:
            return False
        if rule.status == 429:
            raise errors.too_many_requests("lab fault: too many requests", rule.retry_after_s)
        raise errors.ApiError(rule.status, "InternalError", f"lab fault: injected HTTP {rule.status}")

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        if path.startswith("/lab/v1/"):
            self._lab(method, path[len("/lab/v1/"):], query)
            return
        if method == "GET" and path.startswith("/openapi/v3"):
            self._send_json(200, self._openapi_v3(path[len("/openapi/v3"):].strip("/")))
            return
        if method == "GET" and path in ("/version", "/api", "/apis", _CORE_PREFIX):
            self._send_json(200, self._discovery(path))
            return
        if path.startswith(_CORE_PREFIX + "/"):
            self._resource(method, "", "v1", path[len(_CORE_PREFIX):], query)
            return
        match = _GROUP_RE.match(path)
        if match:
            group, version, rest = match["group"], match["version"], match["rest"]
            if group == resources.SUBRESOURCE_GROUP:
                self._kubevirt_subresource(method, version, rest or "")
                return
            if rest is None and method == "GET" and resources.groups().get(group) == version:
                self._send_json(200, self._resource_list(group, version))
                return
            if rest is not None and resources.groups().get(group) == version:
                self._resource(method, group, version, rest, query)
                return
        if method == "GET" and path.startswith("/apis/") and path.count("/") == 2:
            group = path.split("/")[2]
            if group in resources.groups():
                self._send_json(200, self._group(group))
                return
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")

    # ------------------------------------------------------------------ discovery

    def _discovery(self, path: str) -> Obj:
        if path == "/version":
            return SERVER_VERSION
        if path == "/api":
            host, port = self.server.server_address[:2]
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g) for g in resources.groups()]}
        return self._resource_list("", "v1")

    @staticmethod
    def _openapi_v3(group_version: str) -> Obj:
        """Just enough OpenAPI v3 for kubectl to see that the server validates fields itself (it then sends
        `fieldValidation=Strict` instead of validating client-side against schemas the lab does not serve)."""
        served = {("api/v1" if not r.group else f"apis/{r.api_version}") for r in resources.RESOURCES}
        if not group_version:
            return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=lab"} for gv in sorted(served)}}
        if group_version not in served:
            raise errors.ApiError(404, "NotFound", f"no OpenAPI document for {group_version}")
        paths: Obj = {}
        for r in resources.RESOURCES:
            if ("api/v1" if not r.group else f"apis/{r.api_version}") != group_version:
                continue
            scope = "/namespaces/{namespace}" if r.namespaced else ""
            paths[f"/{group_version}{scope}/{r.plural}/{{name}}"] = {"patch": {
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "x-kubernetes-action": "patch",
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            }}
        return {"openapi": "3.0.0", "info": {"title": "livedrill lab", "version": SERVER_VERSION["gitVersion"]},
                "paths": paths, "components": {"schemas": {}}}

    @staticmethod
    def _group(group: str) -> Obj:
        version = resources.groups()[group]
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv], "preferredVersion": gv}

    @staticmethod
    def _resource_list(group: str, version: str) -> Obj:
        listed: list[Obj] = []
        for r in resources.RESOURCES:
            if r.group != group or r.version != version:
                continue
            entry: Obj = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                          "kind": r.kind, "verbs": list(r.verbs)}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            listed.append(entry)
            if r.has_status:
                listed.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                               "kind": r.kind, "verbs": ["get", "patch", "update"]})
            for sub, kind, verbs in r.extra_subresources:
                listed.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                               "kind": kind, "verbs": list(verbs), **({"group": "policy", "version": "v1"}
                                                                      if sub == "eviction" else {})})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": listed}

    # ------------------------------------------------------------------ resources

    def _parse_resource_path(self, group: str, version: str, rest: str) -> tuple[ResourceType, str | None, str | None, str | None]:
        parts = [p for p in rest.split("/") if p]
        namespace = None
        if len(parts) >= 3 and parts[0] == "namespaces" and resources.find(group, version, parts[2]):
            namespace, parts = parts[1], parts[2:]
        if not parts or len(parts) > 3:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        r = resources.find(group, version, parts[0])
        if r is None or (namespace is not None and not r.namespaced):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        return r, namespace, name, sub

    def _resource(self, method: str, group: str, version: str, rest: str, query: dict[str, str]) -> None:
        r, namespace, name, sub = self._parse_resource_path(group, version, rest)
        store = self.server.store
        if r.namespaced and namespace is None and name is not None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = namespace or ""
        if name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    self._watch(r, namespace, query)
                else:
                    self._list(r, namespace, query)
            elif method == "POST":
                if r.namespaced and namespace is None:
                    raise errors.ApiError(405, "MethodNotAllowed", "create needs a namespace")
                body = self._object_body(r)
                self._send_json(201, store.create(r, ns, body))
            else:
                raise errors.ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
            return
        if sub == "eviction" and r.kind == "Pod" and method == "POST":
            self._send_json(201, self.server.hooks.evict(ns, name, self._read_body() or {}))
            return
        if sub not in (None, "status") or (sub == "status" and not r.has_status):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            obj = store.get(r, ns, name)
            if sub is None and self._wants_table():
                self._send_json(200, render_table(r, [obj], int(obj["metadata"]["resourceVersion"])))
            else:
                self._send_json(200, obj)
        elif method == "PUT":
            self._send_json(200, store.replace(r, ns, name, self._object_body(r), sub))
        elif method == "PATCH":
            self._patch(r, ns, name, sub)
        elif method == "DELETE":
            self._send_json(200, store.delete(r, ns, name))
        else:
            raise errors.ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _object_body(self, r: ResourceType) -> Obj:
        body = self._read_body()
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        if body.get("kind") not in (None, r.kind) or body.get("apiVersion") not in (None, r.api_version):
            raise errors.bad_request(f"expected {r.api_version} {r.kind}, got {body.get('apiVersion')} {body.get('kind')}")
        return body

    def _patch(self, r: ResourceType, ns: str, name: str, sub: str | None) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        document = self._read_body()
        if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            apply = patch.merge_patch
        elif content_type == "application/json-patch+json":
            apply = patch.json_patch
        else:
            raise errors.ApiError(415, "UnsupportedMediaType", f"the patch type {content_type!r} is not supported")

        def change(current: Obj) -> None:
            try:
                patched = apply(current, document)
            except patch.PatchTestFailed as exc:
                raise errors.conflict(r.group, r.plural, name, str(exc)) from exc
            except patch.PatchError as exc:
                raise errors.invalid(r.kind, name, str(exc)) from exc
            if not isinstance(patched, dict):
                raise errors.invalid(r.kind, name, "the patched object is not an object")
            wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(r.group, r.plural, name, "the object has been modified; please apply your "
                                      "changes to the latest version and try again")
            current.clear()
            current.update(patched)

        self._send_json(200, self.server.store.mutate(r, ns, name, change, sub))

    def _matcher(self, r: ResourceType, query: dict[str, str]) -> selectors.Matcher:
        try:
            labels = selectors.parse_label_selector(query.get("labelSelector"))
            fields = selectors.parse_field_selector(query.get("fieldSelector"), r.field_selectors)
        except selectors.SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        return selectors.object_matcher(labels, fields)

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _list(self, r: ResourceType, namespace: str | None, query: dict[str, str]) -> None:
        items, rv = self.server.store.list(r, namespace, self._matcher(r, query))
        if self._wants_table():
            self._send_json(200, render_table(r, items, rv))
            return
        self._send_json(200, {"kind": f"{r.kind}List", "apiVersion": r.api_version,
                              "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _watch(self, r: ResourceType, namespace: str | None, query: dict[str, str]) -> None:
        matcher = self._matcher(r, query)
        since_raw = query.get("resourceVersion", "")
        # A watch-list (client-go's WatchListClient, e.g. `kubectl wait`): the current objects as ADDED, then a
        # BOOKMARK annotated k8s.io/initial-events-end, then changes.
        watch_list = query.get("sendInitialEvents") == "true"
        try:
            since = int(since_raw) if since_raw not in ("", "0") and not watch_list else None
        except ValueError as exc:
            raise errors.bad_request(f"invalid resourceVersion {since_raw!r}") from exc
        timeout_s = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        store = self.server.store

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True

        def should_stop() -> bool:
            return self.server.stopping.is_set() or time.monotonic() >= deadline or self._peer_closed()

        def bookmark(rv: int, annotations: dict[str, str] | None = None) -> None:
            metadata: Obj = {"resourceVersion": str(rv), **({"annotations": annotations} if annotations else {})}
            self._chunk({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version,
                                                        "metadata": metadata}})

        def idle() -> None:
            if bookmarks:
                bookmark(store.current_rv())

        def initial_events_end(rv: int) -> None:
            bookmark(rv, {"k8s.io/initial-events-end": "true"})

        try:
            as_table = self._wants_table()
            for event in store.watch(r, namespace, matcher, since, should_stop, idle, idle_interval_s=1.0,
                                     initial_events_end=initial_events_end if watch_list else None):
                obj = render_table(r, [event.obj], event.resource_version) if as_table else event.obj
                self._chunk({"type": event.type, "object": obj})
        except errors.ApiError as error:  # a too-old resourceVersion: the apiserver's ERROR event
            self._chunk({"type": "ERROR", "object": error.status()})
        except (BrokenPipeError, ConnectionResetError):
            return
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _peer_closed(self) -> bool:
        """A watch client sends nothing after its request: anything readable is its close (EOF or close_notify)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)

    # ------------------------------------------------------------------ KubeVirt subresources and lab endpoints

    def _kubevirt_subresource(self, method: str, version: str, rest: str) -> None:
        parts = [p for p in rest.split("/") if p]
        if (version == resources.SUBRESOURCE_VERSION and method == "PUT" and len(parts) == 6
                and parts[0] == "namespaces" and parts[2] == "virtualmachineinstances"
                and parts[4:] == ["evacuate", "cancel"]):
            self._send_json(200, self.server.hooks.cancel_evacuation(parts[1], parts[3], self._read_body() or {}))
            return
        if (version == resources.SUBRESOURCE_VERSION and method == "PUT" and len(parts) == 5
                and parts[0] == "namespaces" and parts[2] == "virtualmachines" and parts[4] == "migrate"):
            self._send_json(200, self.server.hooks.migrate_vm(parts[1], parts[3], self._read_body() or {}))
            return
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")

    def _lab(self, method: str, path: str, query: dict[str, str]) -> None:
        if path == "freezes" and method == "GET":
            self._send_json(200, {"freezes": self.server.hooks.freezes()})
        elif path == "faults" and method == "GET":
            self._send_json(200, {"faults": [rule.model_dump() for rule in self.server.faults.rules()]})
        elif path == "faults" and method == "POST":
            try:
                rule = FaultRule.model_validate(self._read_body() or {})
            except ValidationError as exc:
                raise errors.invalid("FaultRule", "", str(exc)) from exc
            self.server.faults.add(rule)
            self._send_json(201, rule.model_dump())
        elif path == "faults" and method == "DELETE":
            self.server.faults.clear()
            self._send_json(200, {"faults": []})
        elif path == "compact" and method == "POST":
            self._send_json(200, {"oldestResumableResourceVersion": str(self.server.store.compact())})
        else:
            raise errors.ApiError(404, "NotFound", f"no lab endpoint {method} /lab/v1/{path}")
