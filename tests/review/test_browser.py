"""The console in a real headless chromium, fed by the running pipeline (all services as processes).

Logs in, sees an alert appear without reloading, sees both images, rejects it, and finds the
adjudication on the topic and the chip gone from every store once the erasure bound (short
settings here) has passed. Then the transparency report of the run is checked against counts
made independently from the topics, and the docs' screenshots (docs/officers/console.md, docs/officers/report.md) are taken with the faces
replaced by generated placeholders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from services.common.jsonevents import decode_record
from services.tools.demo.adjudicate import ConsoleClient, adjudicate
from services.tools.demo.cast import choose_cast
from services.tools.demo.deployment import open_deployment
from services.tools.demo.pipeline import Pipeline
from services.tools.demo.run import DEPLOYMENT, DemoOptions, TopicTail, crowd_camera, enrol, transparency_report
from services.governance.evidence.sealing import SealError, associated_data, open_sealed
from services.pipeline.ingest.cameras import save_cameras
from services.operations.review.custody import TransitKeyStore
from services.operations.review.users import UsersFile
from tests.kafka_helpers import wait_until

from .browser_helpers import chromium, placeholder_screenshot, screenshots_dir

pytestmark = [pytest.mark.slow, pytest.mark.browser]
PASSWORD = "officer password 1"


def topic_bodies(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict | None]]:
    tail = TopicTail(bootstrap, topic)
    try:
        out, empty = [], 0
        while empty < 3:
            got = tail.poll(0.3)
            out += [(r.key(), decode_record(r.value(), r.headers()).data if r.value() is not None else None) for r in got]
            empty = 0 if got else empty + 1
        return out
    finally:
        tail.close()


def faces_detected(port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith("lfr_faces_detected_total ")]
    return int(float(value))


def settled(read, quiet_s: float = 2.0, timeout_s: float = 30.0):
    """``read()`` once it has returned the same value for ``quiet_s``."""
    value, since, deadline = read(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "the value did not settle"
        time.sleep(0.5)
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


def test_officer_rejects_a_live_alert_and_its_chip_is_erased(lfw_dir, tmp_path, face_engine):
    from selenium.webdriver.common.by import By

    options = DemoOptions(fps=3.0, seed=11, workdir=tmp_path / "run")
    cast = choose_cast(lfw_dir, *face_engine, watchlisted=3, strangers=4, seed=options.seed, deployment=DEPLOYMENT,
                       recognisable_margin=0.08)
    state = tmp_path / "review"
    UsersFile(state / "users.json").add("pc-1234", PASSWORD, "operator", (DEPLOYMENT,))
    from services.common.broker import free_port

    port = free_port()
    url = f"http://localhost:{port}"
    pipeline = Pipeline(options.workdir, extra_env={"LFR_TRANSIT_KEY_VALIDITY_S": "4", "LFR_TRANSIT_KEY_GRACE_S": "4",
                                                    "LFR_SWEEP_INTERVAL_S": "0.5", "LFR_REJECTED_ERASURE_S": "5"})
    pipeline.start_broker()
    driver = None
    try:
        enrol(pipeline, cast, *face_engine)
        deployment = open_deployment(pipeline.bootstrap, DEPLOYMENT, ["demo-cam-1"])  # authorised and active
        pipeline.start("review", env={"LFR_STATE_DIR": str(state), "LFR_USERS_FILE": str(state / "users.json"),
                                      "LFR_HTTP_HOST": "127.0.0.1", "LFR_HTTP_PORT": str(port), "LFR_PUBLIC_URL": url})
        pipeline.wait_ready(("review",))
        detect_metrics = free_port()  # faces processed, counted independently of lfr.counts.v2 (see below)
        pipeline.start("detect", env={"LFR_METRICS_PORT": str(detect_metrics)})
        for service in ("embed", "matcher", "dispatch"):
            pipeline.start(service)
        pipeline.wait_ready(("detect", "embed", "matcher", "dispatch"))

        driver = chromium()
        driver.get(url + "/")
        assert driver.current_url.endswith("/login")  # no page without a session
        driver.find_element(By.ID, "username").send_keys("pc-1234")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        # find_elements: the page after sign-in may still be loading (find_element would raise at once).
        wait_until(lambda: any(e.text == "live" for e in driver.find_elements(By.ID, "live")), 20, "the live stream connected")
        cookie = driver.get_cookie("lfr_session")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        driver.execute_script("window.__notReloaded = true")

        save_cameras(pipeline.cameras_file, {"demo-cam-1": crowd_camera(cast, lfw_dir, options)})
        pipeline.start("ingest")  # the queue is empty until the pipeline raises an alert
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#queue li"), 150, "an alert in the queue", interval_s=0.5)
        assert driver.execute_script("return window.__notReloaded === true"), "the page was reloaded"

        first = driver.find_elements(By.CSS_SELECTOR, "#queue li")[0]
        alert_id = first.get_attribute("data-alert-id")
        first.click()
        loaded = "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth > 0;"
        wait_until(lambda: driver.execute_script(loaded, "probe") and driver.execute_script(loaded, "reference"), 30,
                   "probe and reference images shown")
        assert driver.find_element(By.ID, "f-sightings").text.isdigit()
        assert "ago" in driver.find_element(By.ID, "detail").text
        # The detail pane shows the alert selected in the queue (read from the page, never saved).
        assert driver.find_element(By.CSS_SELECTOR, "#queue li.selected").get_attribute("data-alert-id") == alert_id
        assert driver.find_element(By.CSS_SELECTOR, "#queue li.selected .ref").text == driver.find_element(By.ID, "f-reference").text

        # Screenshot for the docs (docs/officers/console.md): generated placeholders instead of faces, no data-set names.
        placeholder_screenshot(driver, screenshots_dir() / "review-console.png")
        driver.find_element(By.ID, "f-status").click()  # keep focus on the page for the keyboard
        from selenium.webdriver.common.action_chains import ActionChains

        first_seen = time.time()
        driver.execute_script("document.getElementById('queue').focus()")
        ActionChains(driver).send_keys("r").perform()  # keyboard: R = rejected
        wait_until(lambda: "rejected" in driver.find_element(By.ID, "f-status").text, 20, "the decision shown")
        decided_at = time.time()
        assert decided_at - first_seen < 60

        # The adjudication is on the topic, without biometrics.
        def adjudications():
            return [d for _, d in topic_bodies(pipeline.bootstrap, "lfr.adjudications.v3") if d and d["alert_id"] == alert_id]
        wait_until(lambda: adjudications(), 20, "the adjudication on the topic")
        [record] = adjudications()
        assert (record["decision"], record["actor"], record["role"]) == ("rejected", "pc-1234", "operator")
        assert record["alert_to_decision_ms"] > 0 and not any(isinstance(v, bytes) for v in record.values())

        # The chip is gone from every store once the bound has passed (validity 4 s + grace 4 s here).
        keys = TransitKeyStore(state / "keys", 4000, 4000, lambda: int(time.time() * 1000))
        sealed = [d for k, d in topic_bodies(pipeline.bootstrap, "lfr.evidence.v1") if d and d["alert_id"] == alert_id]
        assert sealed, "the chip was never sent as sealed evidence"

        def erased() -> bool:
            if (state / "evidence" / f"{alert_id}.img").exists() or (state / "evidence" / f"{alert_id}.json").exists():
                return False
            live_keys = keys.all()
            return not any(k.key_id == s["key_id"] for k in live_keys for s in sealed)
        wait_until(erased, 5 + 8 + 5, "custody file erased and the transit key destroyed")
        for key in keys.all():
            for record in sealed:
                with pytest.raises(SealError):
                    open_sealed(key.private, bytes(record["sealed"]), associated_data(alert_id, record["revision"]))
        assert any(k == alert_id.encode() and d is None for k, d in topic_bodies(pipeline.bootstrap, "lfr.evidence.v1"))
        status = driver.execute_script(
            "const r = await fetch(arguments[0], {credentials: 'same-origin'}); return r.status;", f"/api/alerts/{alert_id}/probe")
        assert status == 404
        alerts = topic_bodies(pipeline.bootstrap, "lfr.alerts.v3")
        assert all("chip" not in d["face"] for _, d in alerts), "an alert carried a chip"

        # The other alerts: decided by the demo's officer stand-in (ground truth), through the API.
        pipeline.stop("ingest")
        officer = ConsoleClient(url, "pc-1234", PASSWORD)
        truth = pipeline.truth()
        for _, data in alerts:
            if data["alert_id"] != alert_id:
                wait_until(lambda d=data: adjudicate(officer, d, truth) is not None, 20, "alert decided")
        officer.close()

        # The report equals counts made here, independently, from the topics.
        time.sleep(1)
        ids = {d["alert_id"] for _, d in alerts if d["deployment_id"] == DEPLOYMENT}
        decisions: dict[str, dict] = {}
        for _, d in topic_bodies(pipeline.bootstrap, "lfr.adjudications.v3"):
            decisions.setdefault(d["alert_id"], {}).update({k: v for k, v in d.items() if k in ("decision", "outcome")})
        # Faces processed: every face detect's detector found, read from its Prometheus counter
        # (one deployment here), a path independent of the lfr.counts.v2 records the report sums.
        detected = settled(lambda: faces_detected(detect_metrics))
        expected = {
            "faces": detected,
            "alerts": len(ids),
            "confirmed": sum(1 for a in ids if decisions.get(a, {}).get("decision") == "confirmed"),
            "false_alerts": sum(1 for a in ids if decisions.get(a, {}).get("decision") == "rejected"),
            "engagements": sum(1 for a in ids if decisions.get(a, {}).get("outcome") in ("spoken_to", "arrested", "other")),
            "arrests": sum(1 for a in ids if decisions.get(a, {}).get("outcome") == "arrested"),
        }
        out = tmp_path / "reports"
        result = subprocess.run([sys.executable, "-m", "services.cli", "report", "--deployment", DEPLOYMENT, "--json",
                                 "--out", str(out), "--bootstrap-servers", pipeline.bootstrap],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected
        assert faces_detected(detect_metrics) == detected  # detect had finished: nothing counted after the report
        (tmp_path / "demo-report").mkdir()
        assert transparency_report(pipeline, tmp_path / "demo-report")[0] == expected  # the demo's summary["report"]
        assert expected["false_alerts"] >= 1 and expected["faces"] > 0
        [row] = json.loads((out / f"report-{DEPLOYMENT}.json").read_text())["deployments"]
        assert row["authorising_rank"] == deployment.record.authorisation.rank and row["place"] == deployment.record.place["name"]
        assert row["watchlist_size"] == len(cast.watchlist) and row["window_source"] == "deployment record"

        driver.get((out / f"report-{DEPLOYMENT}.html").as_uri())
        driver.save_screenshot(str(screenshots_dir() / "transparency-report.png"))  # figures only, no face
    finally:
        if driver is not None:
            driver.quit()
        codes = pipeline.stop_all()
    assert all(code == 0 for code in codes.values()), codes
