"""Transport security settings, and what the embedded broker (Tansu 0.6) can and cannot do.

The SASL_SSL pipeline test the issue asks for cannot run against the embedded broker; these
tests hold the measured reasons, so they fail (and say so) the day a Tansu release fixes them:
- TLS: its CLI refuses ``--cert`` together with ``--key`` ("the argument '--cert <CERT>' cannot
  be used with '--key <KEY>'"), and with ``--cert`` alone the listener still speaks plaintext;
- SCRAM: with ``--authentication`` it refuses every unauthenticated request, the admin request
  that would create the first SCRAM credential included, and memory storage starts empty, so no
  client can ever log in ("Auth(Sasl(NoSharedMechanism))" in its log).
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.broker import broker_binary, free_port
from services.common.errors import SettingsError
from services.common.settings import KafkaSettings, load_settings


def test_sasl_plain_without_tls_is_refused():
    with pytest.raises(SettingsError, match="PLAIN needs LFR_KAFKA_SECURITY_PROTOCOL=SASL_SSL"):
        load_settings(KafkaSettings, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                      kafka_sasl_username="u", kafka_sasl_password="p")
    load_settings(KafkaSettings, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                  kafka_sasl_username="u", kafka_sasl_password="p")
    load_settings(KafkaSettings, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                  kafka_sasl_username="u", kafka_sasl_password="p")


def self_signed(tmp_path) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def tansu(port: int, *flags: str, log) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    return subprocess.Popen([broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/", *flags], stdout=log, stderr=subprocess.STDOUT)


def answers(port: int, **config) -> bool:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "socket.timeout.ms": 2000, **config})
    try:
        admin.list_topics(timeout=3)
        return True
    except Exception:  # noqa: BLE001 - refused or not spoken
        return False


def wait_listening(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)


def test_embedded_broker_cannot_serve_tls_or_scram(tmp_path):
    cert, key = self_signed(tmp_path)
    with open(tmp_path / "both.log", "wb") as log:
        both = tansu(free_port(), "--cert", str(cert), "--key", str(key), log=log)
        assert both.wait(15) != 0
    assert b"cannot be used with '--key" in (tmp_path / "both.log").read_bytes()

    port = free_port()
    with open(tmp_path / "cert.log", "wb") as log:
        cert_only = tansu(port, "--cert", str(cert), log=log)
        try:
            wait_listening(port, cert_only)
            assert not answers(port, **{"security.protocol": "SSL", "ssl.ca.location": str(cert)})
            assert answers(port)  # still plaintext
        finally:
            cert_only.terminate()
            cert_only.wait(10)

    port = free_port()
    with open(tmp_path / "auth.log", "wb") as log:
        auth = tansu(port, "--authentication", log=log)
        try:
            wait_listening(port, auth)
            assert not answers(port)  # unauthenticated: refused, so no credential can be created
            assert not answers(port, **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                        "sasl.username": "lfr-matcher", "sasl.password": "any"})
        finally:
            auth.terminate()
            auth.wait(10)
