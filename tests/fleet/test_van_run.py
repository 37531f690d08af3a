"""`lfr van run` (issue #26 point 1): a whole van on embedded defaults starts healthy, publishes
its heartbeat, queues it for a core it cannot reach (a van offline), and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from services.common.envelope import decode
from tests.kafka_helpers import TopicReader


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lines(process, deadline: float, want: str) -> dict:
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise AssertionError(f"lfr van run exited {process.returncode} before {want!r}")
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("state") == want:
            return event
        assert event.get("state") != "failed", event
    raise AssertionError(f"no {want!r} from lfr van run in time")


@pytest.mark.slow
def test_a_van_starts_healthy_on_embedded_defaults_beats_and_stops_cleanly(tmp_path):
    env = {**os.environ, "LFR_VAN_ID": "van-7", "LFR_FORCE": "gmp", "LFR_VAN_STATE_DIR": str(tmp_path / "state"),
           "LFR_LINK_CORE_BOOTSTRAP_SERVERS": f"127.0.0.1:{_unused_port()}",  # no core: the van works offline
           "LFR_HEARTBEAT_INTERVAL_S": "1", "LFR_LINK_DOWN_AFTER_S": "1",
           "LFR_HTTP_PORT": str(_unused_port())}  # the review console's port: never a fixed one another run may hold
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "van", "run", "--workdir", str(tmp_path / "run")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        healthy = _lines(process, time.monotonic() + 300, "healthy")
        assert healthy["services"] == ["ingest", "detect", "embed", "matcher", "dispatch", "review", "link"]
        reader = TopicReader(healthy["bootstrap"], "lfr.gmp.heartbeats.v1")  # the force's own topic
        try:
            beats = reader.read_until(2, timeout_s=60)
        finally:
            reader.close()
        body = decode(beats[-1].value()).data
        assert body["van_id"] == "van-7" and body["force"] == "gmp"
        deadline = time.monotonic() + 30  # the link took the heartbeats into its outbox; the core is unreachable
        from services.van.link.outbox import Outbox

        while time.monotonic() < deadline:
            outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
            try:
                if outbox.backlog().rows:
                    break
            finally:
                outbox.close()
            time.sleep(0.2)
        else:
            raise AssertionError("the link queued nothing in the van's outbox")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        stopped = _lines(process, time.monotonic() + 90, "stopped")
        assert process.wait(30) == 0
        assert set(stopped["exit_codes"]) == set(healthy["services"]) and not any(stopped["exit_codes"].values())
    finally:
        if process.poll() is None:  # a failed check: let the runner stop its services (a kill would orphan them)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_camera_frame_rates_for_the_heartbeat_come_from_ingest_s_counters():
    from services.van.fleet.van import captured_frames, frame_rates

    text = ('# HELP lfr_frames_captured_total Frames read from cameras\n# TYPE lfr_frames_captured_total counter\n'
            'lfr_frames_captured_total{camera="mast-1"} 100.0\nlfr_frames_captured_total{camera="mast-2"} 7.0\n')
    after = captured_frames(text)
    assert after == {"mast-1": 100.0, "mast-2": 7.0}
    assert frame_rates({"mast-1": 50.0, "mast-2": 7.0}, after, 5.0) == {"mast-1": 10.0, "mast-2": 0.0}
    assert frame_rates({}, {"mast-3": 30.0}, 15.0) == {"mast-3": 2.0}


def test_a_full_van_disk_stops_capture_says_so_and_resumes_when_space_is_back(tmp_path):
    from services.van.fleet.settings import VanRunSettings
    from services.van.fleet.van import Van, capture_allowed

    assert capture_allowed(100, 100, capturing=True) and not capture_allowed(99, 100, capturing=True)
    assert not capture_allowed(150, 100, capturing=False) and capture_allowed(200, 100, capturing=False)  # hysteresis
    full = VanRunSettings(link_core_bootstrap_servers="127.0.0.1:1", van_state_dir=tmp_path / "state",
                          van_min_free_mb=10**7)  # 10 TB free wanted: this disk is "full"
    said: list[dict] = []
    van = Van(full, tmp_path / "run", report=lambda line: said.append(json.loads(line)))
    ingest = subprocess.Popen(["sleep", "120"])  # a real process standing in for ingest: it must be stopped
    van.pipeline.processes["ingest"] = ingest
    try:
        assert van.check_disk() is False
        assert ingest.wait(10) is not None and "ingest" not in van.pipeline.processes
        assert said[-1]["state"] == "capture_stopped" and said[-1]["reason"] == "disk_full" and said[-1]["policy"] == "stop_capture"
        assert van.check_disk() is False and len(said) == 1  # said once, not on every check
        restarted: list[bool] = []
        van.start_ingest = lambda: restarted.append(True)
        van.settings = full.model_copy(update={"van_min_free_mb": 0})
        assert van.check_disk() is True and restarted == [True] and said[-1]["state"] == "capture_resumed"
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
