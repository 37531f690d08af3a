"""Shared test fixtures: the face data set location and (see kafka fixtures) the embedded broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "datasets" / "lfw-dev"


def resolve_data_dir() -> Path | None:
    """LFW-layout data dir: LFR_DATA_DIR, else ../shared/datasets/lfw-dev; None when absent."""
    configured = os.environ.get("LFR_DATA_DIR")
    path = Path(configured) if configured else DEFAULT_DATA_DIR
    return path if path.is_dir() and any(path.iterdir()) else None


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    path = resolve_data_dir()
    if path is None:
        pytest.skip(
            "face data set not found: set LFR_DATA_DIR to a folder of identity folders "
            f"(Labeled Faces in the Wild layout) or provide {DEFAULT_DATA_DIR}"
        )
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """One embedded Tansu broker for the whole test run, on a free loopback port."""
    from services.common.broker import EmbeddedBroker

    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        # Clients never auto-create topics (#14): the pipeline's default topics exist, as after
        # `lfr broker` or `lfr topics apply`.
        from confluent_kafka.admin import AdminClient

        from services.common.topics import apply_topics, load_topic_specs

        apply_topics(AdminClient({"bootstrap.servers": running.bootstrap_servers}), load_topic_specs())
        yield running


@pytest.fixture
def kafka_env(broker, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """LFR_* variables pointing a runner at the test broker, with a short group session."""
    env = {
        "LFR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        # Tansu holds a new group's first join for about half the session timeout.
        "LFR_SESSION_TIMEOUT_MS": "6000",
        "LFR_HEARTBEAT_INTERVAL_MS": "1000",
        "LFR_METRICS_PORT": "0",
        "LFR_SHUTDOWN_TIMEOUT_S": "20",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def reader(broker):
    """Factory of TopicReaders on the test broker; all are closed at teardown."""
    from tests.kafka_helpers import TopicReader

    readers = []

    def make(topic: str) -> TopicReader:
        readers.append(TopicReader(broker.bootstrap_servers, topic))
        return readers[-1]

    yield make
    for topic_reader in readers:
        topic_reader.close()


@pytest.fixture(scope="session")
def face_engine():
    """One detector and one embedder for the session (models converted once into the cache)."""
    from services.engine.face import FaceDetector, FaceEmbedder

    return FaceDetector(intra_op_threads=1), FaceEmbedder(intra_op_threads=1)


@pytest.fixture(scope="session")
def signing_identity(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One operator key trusted by one keyring for the whole run (LFR_* variables)."""
    from services.governance.audit.identity import ephemeral_identity

    return ephemeral_identity(tmp_path_factory.mktemp("keys"), "test:operator")


@pytest.fixture(scope="session")
def authoriser(signing_identity):
    """A second trusted key, the authorising officer's: a deployment's creator cannot authorise it."""
    from services.governance.audit.identity import add_ephemeral_key

    return add_ephemeral_key(signing_identity, "test:authoriser")


@pytest.fixture(autouse=True)
def _signing_env(signing_identity, authoriser, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test signs watchlist changes and audit records with the session key and trusts it,
    as a deployment must (services refuse to start without a keyring and a key)."""
    for name, value in signing_identity.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def deployments(broker, monkeypatch: pytest.MonkeyPatch):
    """A fresh deployments topic (LFR_DEPLOYMENTS_TOPIC) and ``publish(*records)`` for it: the
    services capture, match and alert only for an active deployment (tests/deployment_helpers.py)."""
    from tests.deployment_helpers import publish_deployment
    from tests.kafka_helpers import create_topics, unique

    topic = unique("deployments")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    monkeypatch.setenv("LFR_DEPLOYMENTS_TOPIC", topic)

    def publish(*records) -> None:
        publish_deployment(broker.bootstrap_servers, topic, *records)

    publish.topic = topic
    return publish
