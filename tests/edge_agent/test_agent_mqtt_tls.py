"""The agent against a Mosquitto that only speaks TLS, asks for client certificates and has ACLs.

A private CA signs the broker's certificate (for 127.0.0.1), the agent's client certificate
(its identity is the username the ACL file names) and a simulator's; an intruder's certificate
from the same CA has no ACL entry. A second, unrelated CA shows what a wrong ``ca_file`` does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from agent_testkit import GATEWAY, SITE, telemetry
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.app import Agent
from edge_agent.config import AgentConfig
from protocols import device_topic, encode
from tests.helpers.mosquitto import Mosquitto


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    rogue_ca: Path
    server: Identity
    agent: Identity
    simulator: Identity
    intruder: Identity


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _ca(cn: str, folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{cn}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _leaf(
    cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, folder: Path, server: bool = False
) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = folder / f"{cn}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(cert_path, _write_key(key, folder / f"{cn}.key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_path = _ca("edgehouse-test-ca", folder)
    _, _, rogue_path = _ca("rogue-ca", folder)
    return Pki(
        ca=ca_path,
        rogue_ca=rogue_path,
        server=_leaf("broker", ca, ca_key, folder, server=True),
        agent=_leaf(GATEWAY, ca, ca_key, folder),
        simulator=_leaf("sim-pub", ca, ca_key, folder),
        intruder=_leaf("intruder", ca, ca_key, folder),
    )


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path) -> Iterator[Mosquitto]:
    acl = tmp_path / "acl"
    acl.write_text(
        # The gateway reads its site's devices and writes its own status/alerts/forecasts; the
        # simulator may only publish device telemetry; anyone else may do nothing.
        f"user {GATEWAY}\ntopic read edgehouse/v1/{SITE}/#\ntopic readwrite edgehouse/v1/{SITE}/gw/{GATEWAY}/#\n\n"
        f"user sim-pub\ntopic write edgehouse/v1/{SITE}/+/telemetry\n"
    )
    extra = (
        f"\ncafile {pki.ca}\ncertfile {pki.server.cert}\nkeyfile {pki.server.key}\n"
        "require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n"
        f"acl_file {acl}\n"
    )
    broker = Mosquitto(persistence_dir=tmp_path / "broker", extra_config=extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


def _tls_client(broker: Mosquitto, pki: Pki, who: Identity, client_id: str) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
    )
    client.tls_set(ca_certs=str(pki.ca), certfile=str(who.cert), keyfile=str(who.key))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def _config(make_config: Any, broker: Mosquitto, pki: Pki, ca: Path) -> AgentConfig:
    cfg: AgentConfig = make_config(
        mqtt={
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "tls": {"ca_file": str(ca), "cert_file": str(pki.agent.cert), "key_file": str(pki.agent.key)},
        },
        models={"enabled": False, "forecast_enabled": False},
    )
    return cfg


def _stored(agent: Agent) -> set[str]:
    conn = agent.store.connect()
    try:
        return {d for (d,) in conn.execute("SELECT DISTINCT device_id FROM telemetry")}
    finally:
        conn.close()


def _publish(client: paho.Client, device: str, n: int) -> list[int]:
    infos = [
        client.publish(device_topic(SITE, device, "telemetry"), encode(telemetry(i, device=device)), qos=1)
        for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(10)
    return [info.rc for info in infos]


def test_agent_ingests_over_mutual_tls_and_the_acl_keeps_strangers_out(
    make_config: Any, tls_broker: Mosquitto, pki: Pki
) -> None:
    agent = Agent(_config(make_config, tls_broker, pki, pki.ca))
    agent.start()
    sim = _tls_client(tls_broker, pki, pki.simulator, "sim-pub")
    intruder = _tls_client(tls_broker, pki, pki.intruder, "intruder")
    try:
        assert agent.mqtt.wait_connected(10)
        time.sleep(0.3)  # subscriptions acknowledged
        # Mosquitto drops a publish the ACL denies and disconnects the client (paho reconnects
        # and retries), so the intruder's messages are never acknowledged: do not wait for them.
        for i in range(50):
            intruder.publish(
                device_topic(SITE, "dev-evil", "telemetry"), encode(telemetry(i, device="dev-evil")), qos=1
            )
        _publish(sim, "dev-1", 500)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and agent.status().messages_in < 500:
            time.sleep(0.05)
        time.sleep(0.3)  # anything else the broker would deliver
        status = agent.status()
        assert status.messages_in == 500 and status.duplicates == 0
        assert _stored(agent) == {"dev-1"}
    finally:
        for client in (sim, intruder):
            client.loop_stop()
            client.disconnect()
        agent.stop()


def test_agent_refuses_a_broker_its_ca_did_not_sign_and_keeps_running(
    make_config: Any, tls_broker: Mosquitto, pki: Pki
) -> None:
    agent = Agent(_config(make_config, tls_broker, pki, pki.rogue_ca))
    agent.start()
    try:
        assert not agent.mqtt.wait_connected(2.0)
        assert agent.mqtt.connected is False
        assert "certificate verify failed" in (agent.mqtt.last_error or "")
    finally:
        agent.stop()  # a clean stop while still retrying
