"""How the faust app is wired from DispatchSettings (no broker needed)."""

from __future__ import annotations

import faust
from faust.auth import SASLCredentials, SSLCredentials

from services.common.settings import DispatchSettings, load_settings
from services.pipeline.dispatch.faust_fixes import OrderedTableManager
from services.pipeline.dispatch.service import Dispatcher, broker_credentials, broker_urls


def test_broker_urls_and_credentials():
    assert broker_urls("a:9092, b:9093") == ["kafka://a:9092", "kafka://b:9093"]
    assert broker_credentials(load_settings(DispatchSettings)) is None
    sasl = broker_credentials(load_settings(DispatchSettings, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                            kafka_sasl_username="lfr", kafka_sasl_password="pw"))
    assert isinstance(sasl, SASLCredentials) and sasl.mechanism.value == "SCRAM-SHA-512" and sasl.protocol.value == "SASL_PLAINTEXT"
    assert sasl.username == "lfr" and sasl.password == "pw" and "pw" not in repr(sasl)
    sasl_ssl = broker_credentials(load_settings(DispatchSettings, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                                                kafka_sasl_username="lfr", kafka_sasl_password="pw"))
    assert sasl_ssl.protocol.value == "SASL_SSL" and sasl_ssl.ssl_context is not None
    assert isinstance(broker_credentials(load_settings(DispatchSettings, kafka_security_protocol="SSL")), SSLCredentials)


def test_app_settings(tmp_path):
    settings = load_settings(DispatchSettings, group_id="dispatch-x", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             webhook_url="http://127.0.0.1:1/hook", webhook_signing_secret="whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    dispatcher = Dispatcher(settings, partitions=4, datadir=tmp_path)
    conf = dispatcher.app.conf
    assert conf.id == "dispatch-x" and conf.broker_session_timeout == 6.0 and conf.broker_heartbeat_interval == 1.0
    assert str(conf.store) == "memory:" and conf.web_enabled is False and conf.TableManager is OrderedTableManager
    assert dispatcher.table.changelog_topic.get_topic_name() == "dispatch-x-open-alerts-changelog"
    assert dispatcher.table.changelog_topic.partitions == 4
    assert isinstance(dispatcher.app, faust.App) and dispatcher.webhook is not None


def test_consumer_fetch_waits_are_short(tmp_path):
    """Tansu answers a long poll only when the wait ends: the wait is added latency per hop
    (faust hard-codes 1500 ms; librdkafka's default is 500 ms)."""
    from services.common.kafka_config import consumer_config
    from services.common.settings import DetectSettings
    from services.pipeline.dispatch.faust_fixes import FETCH_MAX_WAIT_MS

    import asyncio

    dispatcher = Dispatcher(load_settings(DispatchSettings), partitions=1, datadir=tmp_path)

    async def worker_consumer():  # aiokafka consumers are created inside a running loop
        thread = dispatcher.app.consumer._new_consumer_thread()
        return thread._create_worker_consumer(dispatcher.app.transport)

    consumer = asyncio.run(worker_consumer())
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 20
    assert consumer_config(load_settings(DetectSettings))["fetch.wait.max.ms"] <= 20
