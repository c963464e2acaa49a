"""The watch side of the stand-in: a bounded history of change events (like the apiserver's
watch cache) and the chunked WatchEvent stream.

Every write to the store adds one Event, in resourceVersion order, while the store's lock is
held. The history keeps the last `capacity` events; `floor` is the resourceVersion after
which every event is still in it. A watch from a resourceVersion below the floor gets, like
the real cacher (staging/src/k8s.io/apiserver/pkg/storage/cacher: newErrWatcher), a 200
stream with one ERROR event whose object is a Status with code 410 and reason Expired,
"too old resource version: X (FLOOR)". After a restart the history is empty and the floor
is the current resourceVersion, as a real watch cache starts after an apiserver restart.
"""

import collections
import json
import select
import socket
import threading
import time

from kube_resources import status


class Event:
    __slots__ = ("rv", "type", "rt", "ns", "obj", "old")

    def __init__(self, rv, type_, rt, ns, obj, old):
        self.rv, self.type, self.rt, self.ns, self.obj, self.old = rv, type_, rt, ns, obj, old


class EventLog:
    def __init__(self, capacity=1000, bookmark_seconds=5.0, fresh_wait_seconds=3.0):
        self.cond = threading.Condition()
        self.events = collections.deque()
        self.defaults = (capacity, bookmark_seconds, fresh_wait_seconds, 0, False)
        self.split_bytes = 0
        self.coalesce = False
        self.capacity = capacity
        self.bookmark_seconds = bookmark_seconds
        self.fresh_wait_seconds = fresh_wait_seconds
        self.floor = 0
        self.rv = 0
        self.bookmark_epoch = 0  # bumped by /_test/watch/bookmark to send one now
        self.close_epoch = 0  # bumped by /_test/watch/close to end every open watch
        self.close_drop = False
        self.watchers = 0
        self.closed = False

    def start(self, rv):
        with self.cond:
            self.floor = self.rv = rv

    def add(self, type_, rt, ns, obj, old=None):
        """Record one write (called under the store's lock, so in resourceVersion order)."""
        rv = int(obj["metadata"]["resourceVersion"])
        with self.cond:
            self.events.append(Event(rv, type_, rt, ns, obj, old))
            self.rv = max(self.rv, rv)
            self._trim()
            self.cond.notify_all()

    def _trim(self):
        while len(self.events) > self.capacity:
            self.floor = self.events.popleft().rv

    def configure(self, capacity=None, bookmark_seconds=None, fresh_wait_seconds=None,
                  split_bytes=None, coalesce=None):
        with self.cond:
            if split_bytes is not None:
                self.split_bytes = max(0, int(split_bytes))
            if coalesce is not None:
                self.coalesce = bool(coalesce)
            if capacity is not None:
                self.capacity = max(0, int(capacity))
                self._trim()
            if bookmark_seconds is not None:
                self.bookmark_seconds = max(0.01, float(bookmark_seconds))
            if fresh_wait_seconds is not None:
                self.fresh_wait_seconds = max(0.0, float(fresh_wait_seconds))
            self.cond.notify_all()

    def restore_defaults(self):
        self.configure(*self.defaults)

    def close_watches(self, drop=False):
        """End every open watch: with the last chunk (as the apiserver does when a watch
        times out), or, with drop, by closing the connection mid-stream."""
        with self.cond:
            self.close_epoch += 1
            self.close_drop = drop
            self.cond.notify_all()

    def compact(self):
        """Forget the whole history, as an etcd compaction would: older versions get 410."""
        with self.cond:
            self.events.clear()
            self.floor = self.rv
            self.cond.notify_all()

    def force_bookmark(self):
        with self.cond:
            self.bookmark_epoch += 1
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return {"capacity": self.capacity, "bookmark_seconds": self.bookmark_seconds,
                    "fresh_wait_seconds": self.fresh_wait_seconds,
                    "split_bytes": self.split_bytes, "coalesce": self.coalesce,
                    "floor": str(self.floor),
                    "resourceVersion": str(self.rv), "events": len(self.events),
                    "watchers": self.watchers}

    def after(self, rv):
        """Events newer than rv; None when rv is older than the floor (caller holds cond)."""
        if rv < self.floor:
            return None
        out = []
        for e in reversed(self.events):
            if e.rv <= rv:
                break
            out.append(e)
        out.reverse()
        return out


def _matches(sel, rt, ns, obj):
    if sel["ns"] is not None and ns != sel["ns"]:
        return False
    return sel["labels"].matches(obj) and sel["fields"].matches(rt.field_values(obj))


def convert(event, sel):
    """The WatchEvent a watcher with selector sel sees for event, or None. A MODIFIED
    object that enters the selection is ADDED, one that leaves it is DELETED (with the old
    object at the new resourceVersion), as the cacher does."""
    if event.rt is not sel["rt"]:
        return None
    now = _matches(sel, event.rt, event.ns, event.obj)
    if event.type == "ADDED":
        return ("ADDED", event.obj) if now else None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if now else None
    before = event.old is not None and _matches(sel, event.rt, event.ns, event.old)
    if now and before:
        return "MODIFIED", event.obj
    if now:
        return "ADDED", event.obj
    if before:
        old = json.loads(json.dumps(event.old))
        old["metadata"]["resourceVersion"] = str(event.rv)
        return "DELETED", old
    return None


class Stream:
    """Writes one watch response: headers, then one chunk per WatchEvent line. A client must
    not rely on that framing, so tests can change it: split_bytes > 0 cuts every line into
    chunks of that many bytes (each flushed on its own), coalesce puts all the events of one
    wake-up into a single chunk."""

    def __init__(self, handler, split_bytes=0, coalesce=False):
        self.h = handler
        self.started = False
        self.split_bytes = split_bytes
        self.coalesce = coalesce
        self.pending = []

    def begin(self):
        h = self.h
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache, private")
        h.end_headers()
        h.wfile.flush()
        h.status = 200
        self.started = True

    def event(self, type_, obj):
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
        self.pending.append(line)
        if not self.coalesce:
            self.flush()

    def flush(self):
        data, self.pending = b"".join(self.pending), []
        if not data:
            return
        step = self.split_bytes if self.split_bytes > 0 else len(data)
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.h.wfile.flush()

    def end(self):
        self.flush()
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()


def client_gone(handler):
    """Whether the client closed the connection (a FIN, seen by peeking at the raw socket,
    TLS or not, without consuming anything). A watch client sends nothing while it reads."""
    sock = handler.connection
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def serve(handler, log, store, sel, rv_param, bookmarks, timeout, initial_events=False):
    """Run one watch until timeout seconds pass, the client leaves or the server stops.

    sel: {"rt", "ns", "labels", "fields"}; rv_param: the resourceVersion query value (None,
    "", "0" or a number, already checked to parse). initial_events (sendInitialEvents=true):
    the current state as ADDED events, then a BOOKMARK annotated k8s.io/initial-events-end,
    whatever rv_param is."""
    with log.cond:
        log.watchers += 1
    try:
        _serve(handler, log, store, sel, rv_param, bookmarks, timeout, initial_events)
    finally:
        with log.cond:
            log.watchers -= 1


def _bookmark(rt, rv, initial_end=False):
    meta = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def _serve(handler, log, store, sel, rv_param, bookmarks, timeout, initial_events):
    rt = sel["rt"]
    stream = Stream(handler, log.split_bytes, log.coalesce)
    deadline = time.monotonic() + timeout
    initial = []
    with store.lock:
        with log.cond:
            close_epoch = log.close_epoch
            if rv_param in (None, "", "0") or initial_events:
                # Get state and start at most recent: one ADDED per existing object.
                cursor = log.rv
                for ns, obj in store.items(rt):
                    if _matches(sel, rt, ns, obj):
                        initial.append(obj)
                initial.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
                expired = None
            else:
                cursor = int(rv_param)
                expired = cursor < log.floor
                floor = log.floor
    stream.begin()
    try:
        if expired:
            stream.event("ERROR", status(410, "too old resource version: %d (%d)"
                                         % (cursor, floor), "Expired"))
            stream.end()
            return
        for obj in initial:
            stream.event("ADDED", obj)
        if initial_events:
            stream.event("BOOKMARK", _bookmark(rt, cursor, initial_end=True))
        stream.flush()
        # A version from the future: the real cacher waits up to 3 s for it, then fails.
        wait_until = time.monotonic() + log.fresh_wait_seconds
        with log.cond:
            while cursor > log.rv and time.monotonic() < wait_until and not log.closed:
                log.cond.wait(0.1)
            current = log.rv
        if cursor > current:
            stream.event("ERROR", status(504, "Too large resource version: %d, current: %d"
                                         % (cursor, current), "Timeout",
                                         {"causes": [{"reason": "ResourceVersionTooLarge",
                                                      "message": "Too large resource version"}],
                                          "retryAfterSeconds": 1}))
            stream.end()
            return
        next_bookmark = time.monotonic() + log.bookmark_seconds
        with log.cond:
            epoch = log.bookmark_epoch
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            with log.cond:
                events = log.after(cursor)
                if events == [] and epoch == log.bookmark_epoch and not log.closed \
                        and close_epoch == log.close_epoch:
                    wake = min(deadline, next_bookmark) if bookmarks else deadline
                    log.cond.wait(max(0.0, min(wake - now, 1.0)))
                    events = log.after(cursor)
                forced = epoch != log.bookmark_epoch
                epoch = log.bookmark_epoch
                current = log.rv
                floor = log.floor
                if log.closed:
                    break
                if close_epoch != log.close_epoch:
                    if log.close_drop:
                        handler._drop(False)
                        return
                    break
            if not events and client_gone(handler):
                handler.close_connection = True
                return
            if events is None:
                # This watcher fell behind the history window.
                stream.event("ERROR", status(410, "too old resource version: %d (%d)"
                                             % (cursor, floor), "Expired"))
                break
            for e in events:
                cursor = e.rv
                out = convert(e, sel)
                if out:
                    stream.event(*out)
            stream.flush()
            if bookmarks and (forced or time.monotonic() >= next_bookmark):
                cursor = max(cursor, current)
                stream.event("BOOKMARK", _bookmark(rt, cursor))
                stream.flush()
                next_bookmark = time.monotonic() + log.bookmark_seconds
        stream.end()
    except (ConnectionError, OSError):
        handler.close_connection = True
