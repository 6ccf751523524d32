"""The lab's object store: what etcd and the apiserver's registry do, in memory.

One lock guards everything; writers notify watchers through a condition. Every write takes the next
value of one global resourceVersion counter. The watch history is a bounded window: resuming from a
resourceVersion older than the window answers 410 Gone, as after an etcd compaction.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from livedrill_lab.kube import errors
from livedrill_lab.kube.resources import ResourceType

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]
ObjKey = tuple[str, str, str]  # (resource key, namespace or "", name)

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def generated_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    resource_key: str
    namespace: str
    obj: Obj
    previous: Obj | None  # the object before a MODIFIED, to turn selector (un)matches into ADDED/DELETED


def _is_valid_name(name: str) -> bool:
    allowed = set(string.ascii_lowercase + string.digits + "-.")
    return 0 < len(name) <= 253 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()


# An admission hook sees (operation, resource, new object, old object) and may raise ApiError.
AdmissionHook = Callable[[str, ResourceType, Obj, Obj | None], None]


class Store:
    def __init__(self, history_size: int = 2000):
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[ObjKey, Obj] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque(maxlen=history_size)
        self._oldest_resumable_rv = 0  # a watch may resume from any rv >= this
        self._admission: list[AdmissionHook] = []

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def add_admission_hook(self, hook: AdmissionHook) -> None:
        self._admission.append(hook)

    def current_rv(self) -> int:
        with self._lock:
            return self._rv

    # ------------------------------------------------------------------ reads

    def get(self, r: ResourceType, namespace: str, name: str) -> Obj:
        with self._lock:
            obj = self._objects.get((r.key, namespace if r.namespaced else "", name))
            if obj is None:
                raise errors.not_found(r.group, r.plural, name)
            return copy.deepcopy(obj)

    def find(self, r: ResourceType, namespace: str, name: str) -> Obj | None:
        try:
            return self.get(r, namespace, name)
        except errors.ApiError:
            return None

    def list(self, r: ResourceType, namespace: str | None, matcher: Matcher | None = None) -> tuple[list[Obj], int]:
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (key, ns, _), obj in sorted(self._objects.items())
                if key == r.key and (namespace is None or ns == namespace) and (matcher is None or matcher(obj))
            ]
            return items, self._rv

    # ------------------------------------------------------------------ writes

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, r: ResourceType, obj: Obj, previous: Obj | None) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), kind, r.key,
                           obj["metadata"].get("namespace", ""), copy.deepcopy(obj), previous)
        if len(self._history) == self._history.maxlen:
            self._oldest_resumable_rv = self._history[0].resource_version
        self._history.append(event)
        self._changed.notify_all()

    def create(self, r: ResourceType, namespace: str, body: Obj) -> Obj:
        with self._lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise errors.invalid(r.kind, "", "name or generateName is required", "metadata.name")
                for _ in range(10):
                    meta["name"] = meta["generateName"] + generated_suffix()
                    if (r.key, namespace if r.namespaced else "", meta["name"]) not in self._objects:
                        break
            name = meta["name"]
            if not _is_valid_name(name):
                raise errors.invalid(r.kind, name, "a lowercase RFC 1123 subdomain must consist of lower case "
                                     "alphanumeric characters, '-' or '.'", "metadata.name")
            if r.namespaced:
                if meta.get("namespace") not in (None, "", namespace):
                    raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                             "sent on the request")
                if (("/namespaces", "", namespace)) not in self._objects:
                    raise errors.not_found("", "namespaces", namespace)
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            key = (r.key, namespace if r.namespaced else "", name)
            if key in self._objects:
                raise errors.already_exists(r.group, r.plural, name)
            obj["apiVersion"], obj["kind"] = r.api_version, r.kind
            for hook in self._admission:
                hook("CREATE", r, obj, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = rfc3339_now()
            meta["generation"] = 1
            meta.pop("deletionTimestamp", None)
            meta.pop("resourceVersion", None)
            meta["resourceVersion"] = str(self._next_rv())
            self._objects[key] = obj
            self._record("ADDED", r, obj, None)
            return copy.deepcopy(obj)

    def replace(self, r: ResourceType, namespace: str, name: str, body: Obj, subresource: str | None = None) -> Obj:
        """PUT: the body's resourceVersion, when given, must be the current one (optimistic concurrency)."""
        with self._lock:
            old = self.get(r, namespace, name)
            given_rv = body.get("metadata", {}).get("resourceVersion")
            if given_rv and given_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(r.group, r.plural, name,
                                      "the object has been modified; please apply your changes to the latest "
                                      "version and try again")
            if body.get("metadata", {}).get("name", name) != name:
                raise errors.bad_request("the name of the object does not match the name on the URL")
            return self._write(r, old, body, subresource)

    def mutate(self, r: ResourceType, namespace: str, name: str, change: Callable[[Obj], Any],
               subresource: str | None = None) -> Obj:
        """Read-modify-write under the lock (patches and the controller): `change` edits a copy in place
        (its return value is ignored)."""
        with self._lock:
            old = self.get(r, namespace, name)
            new = copy.deepcopy(old)
            change(new)
            return self._write(r, old, new, subresource)

    def _write(self, r: ResourceType, old: Obj, body: Obj, subresource: str | None) -> Obj:
        new = copy.deepcopy(body)
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            new = merged
        else:
            if r.has_status and subresource != "all":
                # The main endpoint of a resource with a status subresource ignores status changes.
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
                if immutable in old["metadata"]:
                    meta[immutable] = old["metadata"][immutable]
                else:
                    meta.pop(immutable, None)
            spec_keys = set(new) | set(old)
            spec_keys -= {"metadata", "status", "apiVersion", "kind"}
            spec_changed = any(new.get(k) != old.get(k) for k in spec_keys)
            meta["generation"] = old["metadata"].get("generation", 1) + (1 if spec_changed else 0)
        new["apiVersion"], new["kind"] = r.api_version, r.kind
        for hook in self._admission:
            hook("UPDATE", r, new, old)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write does not bump the resourceVersion, as in Kubernetes
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        key = (r.key, new["metadata"].get("namespace", ""), new["metadata"]["name"])
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self._objects[key]
            self._record("DELETED", r, new, old)
        else:
            self._objects[key] = new
            self._record("MODIFIED", r, new, old)
        return copy.deepcopy(new)

    def delete(self, r: ResourceType, namespace: str, name: str) -> Obj:
        """Objects with finalizers get a deletionTimestamp and live on until their finalizers are gone."""
        with self._lock:
            old = self.get(r, namespace, name)
            key = (r.key, namespace if r.namespaced else "", name)
            for hook in self._admission:
                hook("DELETE", r, old, old)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return old
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = rfc3339_now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self._objects[key] = new
                self._record("MODIFIED", r, new, old)
                return copy.deepcopy(new)
            del self._objects[key]
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record("DELETED", r, gone, old)
            return gone

    def compact(self) -> int:
        """Forget the watch history (like an etcd compaction); returns the oldest resumable resourceVersion."""
        with self._lock:
            self._history.clear()
            self._oldest_resumable_rv = self._rv
            return self._oldest_resumable_rv

    # ------------------------------------------------------------------ watch

    def watch(self, r: ResourceType, namespace: str | None, matcher: Matcher, since_rv: int | None,
              should_stop: Callable[[], bool], idle: Callable[[], None] | None = None,
              idle_interval_s: float = 1.0,
              initial_events_end: Callable[[int], None] | None = None) -> Iterator[WatchEvent]:
        """Events after `since_rv` (or the current objects as ADDED when None), until `should_stop()`.

        `initial_events_end(rv)` is called once the current objects have been yielded (watch-list streams).
        Raises ApiError 410 when `since_rv` is older than the history window.
        """
        with self._lock:
            if since_rv is None:
                items, cursor = self.list(r, namespace, matcher)
                backlog = [WatchEvent(int(o["metadata"]["resourceVersion"]), "ADDED", r.key,
                                      o["metadata"].get("namespace", ""), o, None) for o in items]
            else:
                if since_rv < self._oldest_resumable_rv:
                    raise errors.gone(f"too old resource version: {since_rv} ({self._oldest_resumable_rv})")
                cursor, backlog = since_rv, []
        yield from backlog
        if initial_events_end is not None:
            initial_events_end(cursor)
        while not should_stop():
            with self._lock:
                pending = [e for e in self._history if e.resource_version > cursor]
                if not pending:
                    self._changed.wait(timeout=idle_interval_s)
                    pending = [e for e in self._history if e.resource_version > cursor]
                if pending and pending[0].resource_version > cursor + 1 and cursor < self._oldest_resumable_rv:
                    raise errors.gone(f"too old resource version: {cursor} ({self._oldest_resumable_rv})")
            if not pending:
                if idle:
                    idle()
                continue
            for event in pending:
                cursor = event.resource_version
                shaped = _shape_for_watcher(event, r, namespace, matcher)
                if shaped:
                    yield shaped


def _shape_for_watcher(event: WatchEvent, r: ResourceType, namespace: str | None, matcher: Matcher) -> WatchEvent | None:
    if event.resource_key != r.key or (namespace is not None and event.namespace != namespace):
        return None
    now_matches = matcher(event.obj)
    if event.type != "MODIFIED":
        return event if now_matches else None
    was_matching = event.previous is not None and matcher(event.previous)
    if now_matches and not was_matching:
        return WatchEvent(event.resource_version, "ADDED", event.resource_key, event.namespace, event.obj, None)
    if was_matching and not now_matches:
        return WatchEvent(event.resource_version, "DELETED", event.resource_key, event.namespace, event.obj, None)
    return event if now_matches else None
