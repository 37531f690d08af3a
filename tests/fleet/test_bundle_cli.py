"""`lfr van keygen` and `lfr bundle inspect|open`: the project's CLI conventions (one line, exit 3 when refused)."""

from __future__ import annotations

import dataclasses
import json
import time

from services.common.cli_support import EXIT_REFUSED
from services.common.signing import Keyring, Signer
from services.van.fleet.bundle import BundleContents, build_bundle, force_owner
from services.van.fleet.vankey import VanPublicKey
from services.governance.watchlist.thresholds import Thresholds
from tests.deployment_helpers import active_deployment
from tests.fleet.test_bundle import entry
from tests.test_cli_conventions import lfr


def test_keygen_build_inspect_open_and_refuse(tmp_path):
    passphrase = "van passphrase 1"
    env = {"LFR_VAN_KEY_PASSPHRASE": passphrase, "LFR_VAN_ID": "van-3", "LFR_FORCE": "gmp",
           "LFR_VAN_KEY_FILE": str(tmp_path / "keys" / "van-3.key.json"), "LFR_VAN_STATE_DIR": str(tmp_path / "state"),
           "LFR_KEYRING_FILE": str(tmp_path / "trust.json")}
    made = lfr("van", "keygen", "--van-id", "van-3", "--out-dir", str(tmp_path / "keys"), env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["van_id"] == "van-3"

    force = Signer.generate(force_owner("gmp"))
    ring = Keyring(tmp_path / "trust.json")
    ring.add(force, int(time.time() * 1000))
    ring.save()
    entries = (entry("subject-a", 1),)
    deployment = dataclasses.replace(active_deployment("dep-van", ["cam-1"], entries=entries), force="gmp")
    raw = build_bundle(BundleContents(deployment, entries, Thresholds(), tuple(ring.keys())), VanPublicKey.load(tmp_path / "keys" / "van-3.pub.json"),
                       "gmp", force, grace_ms=60_000)
    (tmp_path / "b.lfrb").write_bytes(raw)

    shown = lfr("bundle", "inspect", str(tmp_path / "b.lfrb"), env=env)
    assert shown.returncode == 0, shown.stderr
    header = json.loads(shown.stdout)
    assert header["signature"] == "valid" and header["deployment_id"] == "dep-van" and "subject-a" not in shown.stdout

    opened = lfr("bundle", "open", str(tmp_path / "b.lfrb"), env=env)
    assert opened.returncode == 0, opened.stderr
    again = lfr("bundle", "open", str(tmp_path / "b.lfrb"), env=env)
    assert again.returncode == EXIT_REFUSED
    assert again.stderr.strip().splitlines() == [again.stderr.strip()] and "replayed" in again.stderr and "Traceback" not in again.stderr

    (tmp_path / "cut.lfrb").write_bytes(raw[:100])
    cut = lfr("bundle", "open", str(tmp_path / "cut.lfrb"), env={**env, "LFR_FORCE": "gmp"})
    assert cut.returncode == EXIT_REFUSED and "truncated" in cut.stderr

    other = lfr("bundle", "open", str(tmp_path / "b.lfrb"), env={**env, "LFR_FORCE": "wyp"})
    assert other.returncode == EXIT_REFUSED and "wrong_force" in other.stderr

    erased = lfr("van", "erase-due", env=env)
    assert erased.returncode == 0 and erased.stdout == ""  # the window is still open


def test_build_reads_the_deployment_and_its_snapshot_from_kafka(broker, kafka_env, monkeypatch, tmp_path):
    from pathlib import Path

    from services.governance.audit.identity import add_ephemeral_key, ephemeral_identity
    from services.common.settings import WatchlistSettings, load_settings
    from services.van.fleet.bundle import SealedBundle, decrypt_contents, unwrap_data_key
    from services.van.fleet.vankey import VanKey
    from services.governance.watchlist.store import WatchlistStore
    from services.common.settings import DeploymentSettings
    from services.governance.deployments.store import DeploymentStore
    from tests.deployment_helpers import countersign
    from tests.kafka_helpers import create_topics, unique

    topics = {name: unique(name) for name in ("deployments", "watchlist", "audit")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    identity = ephemeral_identity(tmp_path / "keys", "PC 1 operator")
    env = {**kafka_env, **identity, **{f"LFR_{name.upper()}_TOPIC": topic for name, topic in topics.items()}}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    force = add_ephemeral_key(identity, force_owner("gmp"))
    authoriser = add_ephemeral_key(identity, "test:authoriser", force="gmp")  # countersigns: gmp's deployment, gmp's key (#24)
    operator = add_ephemeral_key(identity, "PC 2 gmp", rank="constable", role="operator", force="gmp")
    listed, other = entry("subject-a", 1), entry("subject-b", 2)
    store = WatchlistStore(load_settings(WatchlistSettings))
    store.publish(listed)
    store.publish(other)
    deployment = dataclasses.replace(active_deployment("dep-van", ["cam-1"], entries=[listed]), force="gmp")
    # Audited and signed as `lfr deployment` writes it: the bundle builder reads only verified, audited records.
    deployment = countersign(dataclasses.replace(deployment, created_by=operator.owner), authoriser)
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{operator.key_id}.key.json")))
    DeploymentStore(load_settings(DeploymentSettings)).publish(deployment)  # signed by gmp's operator
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", identity["LFR_SIGNING_KEY_FILE"])
    van = VanKey.generate("van-3")
    (tmp_path / "van-3.pub.json").write_text(van.public().to_json())

    built = lfr("bundle", "build", "--deployment", "dep-van", "--van-key", str(tmp_path / "van-3.pub.json"), "--out", str(tmp_path / "b.lfrb"),
                env={**env, "LFR_FORCE": "gmp", "LFR_BUNDLE_GRACE_S": "120",
                     "LFR_SIGNING_KEY_FILE": str(Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{force.key_id}.key.json"))})
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout.splitlines()[-1])["entries"] == 1
    sealed = SealedBundle.parse((tmp_path / "b.lfrb").read_bytes())
    header = sealed.header()
    assert header.signer_key_id == force.key_id and header.erase_at_ms == deployment.window.end_ms + 120_000
    contents = decrypt_contents(sealed.header_bytes, sealed.payload, unwrap_data_key(sealed, van))
    assert [e.subject_id for e in contents.entries] == ["subject-a"]  # the snapshot's, not the whole watchlist

    missing = lfr("bundle", "build", "--deployment", "no-such", "--van-key", str(tmp_path / "van-3.pub.json"), "--out", str(tmp_path / "x"),
                  env={**env, "LFR_FORCE": "gmp"})
    assert missing.returncode == 2 and "no deployment no-such" in missing.stderr
