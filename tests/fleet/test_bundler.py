"""Bundles on authorisation (issue #26 point 2): the core builds, per van a verified authorised
deployment names, one bundle sealed to that van, into its bundle store, as ciphertext only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from services.van.fleet.bundle import force_owner
from tests.deployment_helpers import active_deployment
from tests.fleet.test_bundle import entry
from tests.test_cli_conventions import lfr


def test_an_authorised_deployment_naming_vans_gets_one_sealed_bundle_per_van(broker, kafka_env, monkeypatch, tmp_path):
    from services.governance.audit.identity import add_ephemeral_key, ephemeral_identity
    from services.common.settings import DeploymentSettings, WatchlistSettings, load_settings
    from services.governance.deployments.store import DeploymentStore
    from services.van.fleet.bundle import SealedBundle, decrypt_contents, unwrap_data_key
    from services.van.fleet.vankey import VanKey
    from services.governance.watchlist.store import WatchlistStore
    from tests.deployment_helpers import countersign
    from tests.kafka_helpers import create_topics, unique

    topics = {name: unique(name) for name in ("deployments", "watchlist", "audit")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    identity = ephemeral_identity(tmp_path / "keys", "PC 1 operator")
    env = {**kafka_env, **identity, **{f"LFR_{name.upper()}_TOPIC": topic for name, topic in topics.items()}}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    force = add_ephemeral_key(identity, force_owner("gmp"))
    authoriser = add_ephemeral_key(identity, "test:authoriser", force="gmp")  # gmp's deployment, gmp's keys (#24)
    operator = add_ephemeral_key(identity, "PC 2 gmp", rank="constable", role="operator", force="gmp")
    listed = entry("subject-a", 1)
    WatchlistStore(load_settings(WatchlistSettings)).publish(listed)
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{operator.key_id}.key.json")))
    store = DeploymentStore(load_settings(DeploymentSettings))  # signs as gmp's operator
    for deployment_id, state, vans in (("dep-vans", "authorised", ("van-3", "van-9")), ("dep-draft", "draft", ("van-3",)),
                                       ("dep-none", "authorised", ())):
        deployment = dataclasses.replace(active_deployment(deployment_id, ["cam-1"], entries=[listed], state=state), force="gmp", vans=vans)
        deployment = dataclasses.replace(deployment, created_by=operator.owner)
        store.publish(countersign(deployment, authoriser) if state != "draft" else deployment)
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", identity["LFR_SIGNING_KEY_FILE"])
    keys, bundles = tmp_path / "van-keys", tmp_path / "bundles"
    keys.mkdir()
    van = VanKey.generate("van-3")
    (keys / "van-3.pub.json").write_text(van.public().to_json())  # van-9 has no key on file: skipped and counted
    run_env = {**env, "LFR_FORCE": "gmp", "LFR_BUNDLE_VAN_KEYS_DIR": str(keys), "LFR_BUNDLE_STORE_DIR": str(bundles),
               "LFR_SIGNING_KEY_FILE": str(Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{force.key_id}.key.json"))}

    first = lfr("bundle", "build-due", env=run_env)
    assert first.returncode == 0, first.stderr
    made = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [(m["deployment_id"], m["van_id"]) for m in made] == [("dep-vans", "van-3")]  # not the draft, not van-9
    assert "no_van_key" in first.stderr
    (path,) = bundles.iterdir()
    raw = path.read_bytes()
    assert b"subject-a" not in raw and b"REFERENCE-IMAGE" not in raw  # ciphertext only at rest
    sealed = SealedBundle.parse(raw)
    assert sealed.header().van_id == "van-3" and sealed.header().signer_key_id == force.key_id
    contents = decrypt_contents(sealed.header_bytes, sealed.payload, unwrap_data_key(sealed, van))
    assert [e.subject_id for e in contents.entries] == ["subject-a"] and contents.deployment.vans == ("van-3", "van-9")

    again = lfr("bundle", "build-due", env=run_env)
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("{")]  # built once
    assert [p.name for p in bundles.iterdir()] == [path.name]
