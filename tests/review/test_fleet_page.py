"""The fleet page of the review console (issue #26): the force's own vans from their heartbeats,
for supervisors and auditors; never another force's van, never to an operator."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from services.van.fleet.heartbeat import build_heartbeat, heartbeat_record
from services.operations.review.users import UsersFile
from tests.kafka_helpers import wait_until

from .helpers import review_settings, running_console
from .test_console import PASSWORD, sign_in


@pytest.fixture
def fleet_env(broker, tmp_path):
    settings = review_settings(broker.bootstrap_servers, tmp_path / "review", cookie_secure=False)
    users = UsersFile(settings.users_file)
    users.add("op1", PASSWORD, "operator", ("van-1",))
    users.add("sup", PASSWORD, "supervisor")
    with running_console(settings) as console:
        yield settings, console


def test_supervisors_see_their_force_s_vans_and_operators_do_not(broker, fleet_env, tmp_path):
    settings, console = fleet_env
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for van, force in (("van-31", "default"), ("van-99", "gmp")):  # the second is another force's
        body = build_heartbeat(van_id=van, force=force, now_ms=now, held={}, cameras={"mast-1": 9.5, "mast-2": 0.0}, disk_path=tmp_path,
                               version="1.2.3", build="abc")
        key, value = heartbeat_record(body)
        producer.produce(settings.heartbeats_topic, key=key, value=value)
    assert producer.flush(10) == 0
    wait_until(lambda: len(console.fleet.vans()) == 2, 20, "the console to read both heartbeats")
    client, _ = sign_in(settings, "sup")
    fleet = client.get("/api/fleet").json()
    assert fleet["force"] == "default" and [v["van_id"] for v in fleet["vans"]] == ["van-31"]
    van = fleet["vans"][0]
    assert van["cameras_sending"] == 1 and van["link"] == "unknown" and van["software"] == {"version": "1.2.3", "build": "abc"}
    page = client.get("/fleet")
    assert page.status_code == 200 and "van-31" in page.text and "van-99" not in page.text and "mast-1 9.5 fps" in page.text
    operator, _ = sign_in(settings, "op1")
    assert operator.get("/api/fleet").status_code == 403
