"""Consumers nobody here wrote read OpenLFR alerts from the embedded broker: kcat and jq, the
CloudEvents Python SDK (tests/consumers/python_consumer.py, the example of docs/downstream.md)
and Node.js with kafkajs (tests/consumers/node/consumer.js). The alerts are produced the way the
dispatcher produces them (policy.decide, then cloudevents.encode_alert)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from services.common.schemas import default_registry
from services.pipeline.dispatch.cloudevents import encode_alert
from services.pipeline.dispatch.policy import decide
from tests.dispatch.helpers import NOW, match
from tests.kafka_helpers import create_topics, unique

HERE = Path(__file__).parent
NODE_DIR = HERE / "node"
COOLDOWN_MS = 60_000
pytestmark = pytest.mark.slow  # three client processes join consumer groups on the broker


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {name} is not installed ({hint}; .ci/run installs it)")
        pytest.skip(f"{name} is not installed ({hint}; .ci/run installs it)")
    return found


@pytest.fixture(scope="module")
def alerts(broker):
    """One alert raised for alice, then updated (another camera), then the update redelivered; bob's alert."""
    topic = unique("lfr.alerts.v3")
    create_topics(broker.bootstrap_servers, topic, partitions=2)
    state, raised = decide(None, match(subject="alice", captured_at_ms=NOW, score=0.61), COOLDOWN_MS, NOW + 300)
    _, updated = decide(state, match(subject="alice", camera="cam-2", seq=2, captured_at_ms=NOW + 1000, score=0.7),
                        COOLDOWN_MS, NOW + 1300)
    _, bob = decide(None, match(subject="bob", captured_at_ms=NOW, score=0.55, priority="amber"), COOLDOWN_MS, NOW + 400)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for alert in (raised, updated, updated, bob):  # at-least-once: the update arrives twice
        value, headers = encode_alert(alert, "/openlfr")
        producer.produce(topic, key=alert.subject_id.encode(), value=value, headers=headers)
    assert producer.flush(30) == 0
    return topic, {"alice": updated, "bob": bob}, raised


def _librdkafka_dir(tmp_path: Path) -> Path | None:
    """A folder with the librdkafka that confluent-kafka bundles, as librdkafka.so.1 (None if not found).

    Debian bookworm's kcat links librdkafka 2.0.2, which misreads the embedded Tansu broker's
    ApiVersions v3 response ("Protocol read buffer underflow for ApiVersion v3 at 274/279", then
    no connection); a real Kafka cluster answers in a form it reads. The same kcat binary with a
    current librdkafka (the one the services use) reads Tansu."""
    import confluent_kafka

    found = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka-*.so.1"))
    if not found:
        return None
    (tmp_path / "librdkafka.so.1").symlink_to(found[0])
    return tmp_path


def test_kcat_and_jq_read_alerts_and_their_cloudevents_headers(broker, alerts, tmp_path):
    kcat, _jq = _tool("kcat", "Debian package kcat"), _tool("jq", "Debian package jq")
    topic, latest, raised = alerts
    library = _librdkafka_dir(tmp_path)
    preload = f"LD_LIBRARY_PATH={library} " if library else ""
    base = f"{preload}{kcat} -C -b {broker.bootstrap_servers} -t {topic} -o beginning -e -q"
    # The value is JSON: jq reads it as it is.
    plain = subprocess.run(["bash", "-o", "pipefail", "-c", f"{base} -f '%s\\n' | jq -c '{{subject_id, priority, score}}'"],
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert sorted(plain) == sorted([
        json.dumps({"subject_id": "alice", "priority": "red", "score": 0.61}, separators=(",", ":")),
        json.dumps({"subject_id": "alice", "priority": "red", "score": 0.7}, separators=(",", ":")),
        json.dumps({"subject_id": "alice", "priority": "red", "score": 0.7}, separators=(",", ":")),
        json.dumps({"subject_id": "bob", "priority": "amber", "score": 0.55}, separators=(",", ":"))])
    # kcat -J: key, headers (name, value, name, value ...) and the payload, which jq parses.
    program = ('{key, headers: (.headers as $h | [range(0; $h | length; 2)] | map({($h[.]): $h[. + 1]}) | add), '
               'alert: (.payload | fromjson | {subject_id, priority, score})}')
    envelopes = [json.loads(line) for line in subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{base} -J | jq -c '{program}'"],
        capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()]
    assert len(envelopes) == 4
    first = next(e for e in envelopes if e["headers"]["ce_id"] == raised.ce_id)
    assert first["key"] == "alice" and first["alert"] == {"subject_id": "alice", "priority": "red", "score": 0.61}
    assert first["headers"] == {
        "ce_specversion": "1.0", "ce_id": raised.ce_id, "ce_source": "/openlfr/deployments/van-1/cameras/cam-1",
        "ce_type": "org.openlfr.alert.raised", "ce_time": first["headers"]["ce_time"], "ce_subject": raised.alert_id,
        "ce_dataschema": "https://openlfr.org/schemas/lfr.alerts.v3.json", "content-type": "application/json"}
    assert {e["headers"]["ce_type"] for e in envelopes} == {"org.openlfr.alert.raised", "org.openlfr.alert.updated"}


def test_cloudevents_sdk_returns_dict_data_that_validates(broker, alerts):
    from cloudevents.v1.kafka import KafkaMessage as V1Message
    from cloudevents.v1.kafka import from_binary

    from tests.consumers.python_consumer import consume

    topic, latest, raised = alerts
    events = consume(broker.bootstrap_servers, topic, unique("sdk"), count=3)
    assert sorted(e.get_id() for e in events) == sorted([raised.ce_id, latest["alice"].ce_id, latest["bob"].ce_id])  # de-duplicated
    for event in events:
        data = event.get_data()
        assert isinstance(data, dict) and event.get_datacontenttype() == "application/json"
        default_registry().validate("lfr.alerts.v3", data)  # the schema in schemas/, nothing else
        assert event.get_subject() == data["alert_id"] and event.get_dataschema().endswith("/lfr.alerts.v3.json")
    # The SDK's v1 API, as in the report (it returned the envelope's bytes then).
    value, headers = encode_alert(latest["bob"], "/openlfr")
    event = from_binary(V1Message(headers=dict(headers), key=b"bob", value=value))
    assert isinstance(event.data, dict) and event.data == latest["bob"].data and event["type"] == "org.openlfr.alert.raised"
    # The example runs as a script too.
    out = subprocess.run([sys.executable, str(HERE / "python_consumer.py"), broker.bootstrap_servers, topic, unique("sdk"), "1"],
                         capture_output=True, text=True, timeout=90, check=True, env={**os.environ, "PYTHONPATH": ""}).stdout
    assert json.loads(out.splitlines()[0])["subject_id"] in ("alice", "bob")


def test_node_kafkajs_consumer_reads_the_same_alerts(broker, alerts):
    node = _tool("node", "Node.js 20")
    if not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but tests/consumers/node has no node_modules (.ci/run runs npm ci there)")
        pytest.skip("kafkajs is not installed: npm ci --prefix tests/consumers/node")
    topic, latest, raised = alerts
    result = subprocess.run([node, str(NODE_DIR / "consumer.js"), broker.bootstrap_servers, topic, unique("node"), "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    by_id = {e["ce_id"]: e for e in events}
    assert set(by_id) == {raised.ce_id, latest["alice"].ce_id, latest["bob"].ce_id}  # the redelivered update once
    for alert in (latest["alice"], latest["bob"]):
        event = by_id[alert.ce_id]
        assert event["data"] == alert.data and event["key"] == alert.subject_id and event["content_type"] == "application/json"
    assert by_id[latest["alice"].ce_id]["ce_type"] == "org.openlfr.alert.updated"


def test_the_downstream_guide_shows_these_consumers_as_they_are():
    guide = (HERE.parents[1] / "docs" / "downstream.md").read_text(encoding="utf-8")
    python = (HERE / "python_consumer.py").read_text(encoding="utf-8")
    example = python[python.index("from __future__ import annotations"):python.index("\n\nif __name__")].strip()
    assert example in guide, "docs/downstream.md: the Python example differs from tests/consumers/python_consumer.py"
    assert (NODE_DIR / "consumer.js").read_text(encoding="utf-8") in guide, "docs/downstream.md: the Node example differs"


def test_deployment_events_read_by_kcat_and_the_cloudevents_sdk_validate_against_the_schema(broker, tmp_path):
    """Public deployment events, written as `lfr run deployment-events` writes them (a replayed one
    twice): kcat and jq read them, the SDK consumer de-duplicates them on ce_id, the schema holds."""
    from services.governance.deployments.public import projected
    from tests.consumers.python_consumer import consume
    from tests.deployments.test_deployment_events import SECRET_SUBJECTS, lifecycle_revisions

    topic = unique("lfr.deployment_events.v1")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    revisions = lifecycle_revisions()[:3]  # drafted, authorised (five listed people), started
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for deployment in (*revisions, revisions[-1]):
        _topic, key, value, headers = projected(deployment, topic)
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0

    kcat, _jq = _tool("kcat", "Debian package kcat"), _tool("jq", "Debian package jq")
    library = _librdkafka_dir(tmp_path)
    preload = f"LD_LIBRARY_PATH={library} " if library else ""
    program = ('{key, type: (.headers as $h | [range(0; $h | length; 2)] | map({($h[.]): $h[. + 1]}) | add | .ce_type), '
               'event: (.payload | fromjson | {revision, state, place: .place.name, rank: .authorisation.rank, size: .watchlist.size})}')
    lines = subprocess.run(["bash", "-o", "pipefail", "-c",
                            f"{preload}{kcat} -C -b {broker.bootstrap_servers} -t {topic} -o beginning -e -q -J | jq -c '{program}'"],
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert [json.loads(line) for line in lines][1] == {
        "key": "dep-1", "type": "org.openlfr.deployment.authorised",
        "event": {"revision": 1, "state": "authorised", "place": "test street", "rank": "superintendent", "size": 5}}
    assert len(lines) == 4 and not any(s in line for line in lines for s in SECRET_SUBJECTS)

    events = consume(broker.bootstrap_servers, topic, unique("sdk"), count=3)
    assert [e.get_id() for e in events] == ["dep-1.0", "dep-1.1", "dep-1.2"]  # the replayed start once
    for event in events:
        assert isinstance(event.get_data(), dict) and event.get_subject() == "dep-1"
        default_registry().validate("lfr.deployment_events.v1", event.get_data())  # the schema in schemas/
        assert event.get_dataschema() == "https://openlfr.org/schemas/lfr.deployment_events.v1.json"
    assert [e.get_type() for e in events] == ["org.openlfr.deployment.drafted", "org.openlfr.deployment.authorised",
                                              "org.openlfr.deployment.started"]
