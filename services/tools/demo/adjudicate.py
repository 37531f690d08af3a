"""The demo's stand-in officer: signs in to the review console as the demo operator and
adjudicates each alert from the synthetic camera's ground truth (through the same HTTP API,
CSRF token and session cookie a browser uses)."""

from __future__ import annotations

import re

import httpx

from .score import is_true_alert


class ConsoleClient:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        page = self.client.get("/login")
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        # The cookies are Secure: browsers send them to http://localhost, httpx only over https,
        # so the demo passes them on by hand.
        self.client.headers["Cookie"] = f"lfr_login_csrf={page.cookies.get('lfr_login_csrf') or ''}"
        response = self.client.post("/login", data={"csrf": login_csrf, "username": username, "password": password})
        if response.status_code != 303:
            raise RuntimeError(f"demo operator could not sign in: HTTP {response.status_code}")
        self.client.headers["Cookie"] = f"lfr_session={response.cookies.get('lfr_session') or ''}"
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', self.client.get("/").text).group(1)

    def post(self, path: str, body: dict) -> httpx.Response:
        return self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})

    def visible(self) -> set[str]:
        return {a["alert_id"] for a in self.client.get("/api/alerts").json()["alerts"]}

    def close(self) -> None:
        self.client.close()


def outcome_for(alert: dict) -> str:
    """A plausible engagement for a confirmed demo alert (the demo has no real officers)."""
    return "arrested" if int(alert["alert_id"][:2], 16) % 2 == 0 else "spoken_to"  # a fixed mix per alert id


def adjudicate(client: ConsoleClient, alert: dict, truth: list[dict]) -> str | None:
    """Decide one alert from the ground truth; None while the console has not shown it yet."""
    if alert["alert_id"] not in client.visible():
        return None
    truth_by_frame = {(t["camera_id"], t["seq"]): t["faces"] for t in truth}
    decision = "confirmed" if is_true_alert(alert, truth_by_frame) else "rejected"
    response = client.post(f"/api/alerts/{alert['alert_id']}/decision", {"decision": decision})
    if response.status_code == 409:
        return "already"
    response.raise_for_status()
    if decision == "confirmed":
        client.post(f"/api/alerts/{alert['alert_id']}/outcome", {"outcome": outcome_for(alert)}).raise_for_status()
    return decision
