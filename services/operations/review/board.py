"""The console's materialised view: alerts (no chips), adjudications and reference images,
rebuilt from the topics at start; and the live listeners the queue page subscribes to.

Thread-safe: the feed thread writes, the web handlers read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .access import may_see_alert
from .users import User

MAX_LISTENER_BACKLOG = 256


@dataclass
class AlertView:
    data: dict[str, Any]  # the latest lfr.alerts.v3 revision
    alert_at_ms: int  # when the alert was raised (revision 0)

    @property
    def alert_id(self) -> str:
        return self.data["alert_id"]

    @property
    def deployment_id(self) -> str:
        return self.data["deployment_id"]


@dataclass
class Listener:
    user: User
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop


@dataclass
class Board:
    alerts: dict[str, AlertView] = field(default_factory=dict)
    adjudications: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: dict[str, bytes] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    on_rejected: Callable[[str], None] | None = None

    # -- writes (feed thread) ------------------------------------------------------------------
    def apply_alert(self, data: dict[str, Any]) -> None:
        with self.lock:
            current = self.alerts.get(data["alert_id"])
            if current is not None and current.data["revision"] >= data["revision"]:
                return
            raised = current.alert_at_ms if current else int(data["first_seen_ms"] + data["capture_to_alert_ms"])
            self.alerts[data["alert_id"]] = view = AlertView(data, raised)
        self._publish(view.data, {"type": "alert", "alert": self.summary(view)})

    def apply_adjudication(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.adjudications[record["alert_id"]] = record
        self._publish(record, {"type": "adjudication", "alert_id": record["alert_id"],
                                                "decision": record["decision"], "outcome": record.get("outcome")})

    def apply_reference(self, subject_id: str, image: bytes | None) -> None:
        with self.lock:
            if image is None:
                self.references.pop(subject_id, None)
            else:
                self.references[subject_id] = image

    # -- reads (web) ---------------------------------------------------------------------------
    def summary(self, view: AlertView) -> dict[str, Any]:
        d = view.data
        adjudication = self.adjudications.get(view.alert_id) or {}
        return {
            "alert_id": view.alert_id, "subject_id": d["subject_id"], "reference": d["reference"], "category": d["category"],
            "priority": d["priority"], "score": d["score"], "threshold": d["threshold"], "camera_id": d["camera_id"],
            "deployment_id": d["deployment_id"], "first_seen_ms": d["first_seen_ms"], "last_seen_ms": d["last_seen_ms"],
            "sightings": d["sightings"], "revision": d["revision"], "alert_at_ms": view.alert_at_ms,
            "decision": adjudication.get("decision"), "outcome": adjudication.get("outcome"),
            "has_reference": d["subject_id"] in self.references,
        }

    def visible(self, user: User) -> list[dict[str, Any]]:
        with self.lock:
            views = [v for v in self.alerts.values() if may_see_alert(user, v.data)]
            return [self.summary(v) for v in sorted(views, key=lambda v: v.alert_at_ms, reverse=True)]

    def get(self, alert_id: str) -> AlertView | None:
        with self.lock:
            return self.alerts.get(alert_id)

    def decision_of(self, alert_id: str) -> str | None:
        with self.lock:
            return (self.adjudications.get(alert_id) or {}).get("decision")

    def rejected(self) -> set[str]:
        with self.lock:
            return {a for a, r in self.adjudications.items() if r["decision"] == "rejected"}

    # -- live listeners ------------------------------------------------------------------------
    def subscribe(self, user: User) -> Listener:
        listener = Listener(user, asyncio.Queue(MAX_LISTENER_BACKLOG), asyncio.get_running_loop())
        with self.lock:
            self.listeners.append(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    def _publish(self, record: dict[str, Any], event: dict[str, Any]) -> None:
        """To the listeners who may see ``record`` (an alert or adjudication: its force and deployment)."""
        with self.lock:
            targets = [lst for lst in self.listeners if may_see_alert(lst.user, record)]
        for listener in targets:
            listener.loop.call_soon_threadsafe(_offer, listener.queue, event)


def _offer(queue: asyncio.Queue, event: dict[str, Any]) -> None:
    # A page that stopped reading loses live events (it reloads the list on reconnect), never the service.
    if not queue.full():
        queue.put_nowait(event)
