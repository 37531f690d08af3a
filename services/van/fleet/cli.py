"""`lfr van keygen|erase-due` and `lfr bundle build|inspect|open`: a van's key and deployment bundles.

A refused bundle ends in one line naming the reason and exit 3 (refused on purpose).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    from services.common.cli_support import kafka_option

    van = commands.add_parser("van", help="this van's key and its bundles' erasure")
    van_sub = van.add_subparsers(dest="van_command", required=True)
    keygen = van_sub.add_parser("keygen", help="new X25519 key pair for a van: private key encrypted (LFR_VAN_KEY_PASSPHRASE), public key for the core")
    keygen.add_argument("--van-id", required=True)
    keygen.add_argument("--out-dir", type=Path, default=Path("var/keys"), help="writes <van id>.key.json (private) and <van id>.pub.json")
    keygen.set_defaults(func=_keygen)
    beat = van_sub.add_parser("heartbeat", help="publish this van's heartbeat (lfr.heartbeats.v1) to the van's broker")
    beat.add_argument("--count", type=int, default=1, help="how many, LFR_HEARTBEAT_INTERVAL_S apart (0 = until stopped)")
    kafka_option(beat)
    beat.set_defaults(func=_heartbeat)
    run = van_sub.add_parser("run", help="a whole van on embedded defaults: broker, in-process index, the van's services and the link (needs LFR_LINK_CORE_BOOTSTRAP_SERVERS)")
    run.add_argument("--workdir", type=Path, default=Path("var/van-run"), help="service logs and the cameras file (cameras.json)")
    run.set_defaults(func=_run)
    fleet = commands.add_parser("fleet", help="the fleet simulation (benchmarks/fleet.py)")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    simulate = fleet_sub.add_parser("simulate", help="replayed-outcome vans across forces, a steady run and a link cut; writes benchmarks/results/fleet.json")
    for option, kind, default, what in (("--vans", int, 4, "replayed-outcome vans"), ("--forces", int, 2, "forces the vans serve"),
                                        ("--rate", float, 5.0, "alerts per second per van"), ("--seconds", float, 20.0, "steady running time"),
                                        ("--cut-s", float, 60.0, "length of the link cut")):
        simulate.add_argument(option, type=kind, default=default, help=what)
    simulate.add_argument("--smoke", action="store_true", help="tiny sizes")
    simulate.add_argument("--out", type=Path, default=None, help="default benchmarks/results/fleet.json")
    simulate.set_defaults(func=_simulate)
    erase = van_sub.add_parser("erase-due", help="crypto-erase every bundle past its window end + grace (no link needed)")
    erase.set_defaults(func=_erase_due)

    bundle = commands.add_parser("bundle", help="deployment bundles: built by the core, opened by one van")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bundle_sub.add_parser("build", help="a deployment's bundle for one van, signed by the force (LFR_SIGNING_KEY_FILE)")
    build.add_argument("--deployment", required=True, help="an authorised or active deployment id")
    build.add_argument("--van-key", type=Path, required=True, help="the van's public key file (<van id>.pub.json)")
    build.add_argument("--out", type=Path, required=True)
    kafka_option(build)
    build.set_defaults(func=_build)
    due = bundle_sub.add_parser("build-due", help="a bundle per van named by each authorised deployment, into LFR_BUNDLE_STORE_DIR")
    due.add_argument("--every", type=float, default=0.0, help="repeat every this many seconds (the core's runner); 0: once")
    kafka_option(due)
    due.set_defaults(func=_build_due)
    inspect = bundle_sub.add_parser("inspect", help="print a bundle's header (no personal data); verify it if LFR_KEYRING_FILE is set")
    inspect.add_argument("file", type=Path)
    inspect.set_defaults(func=_inspect)
    opening = bundle_sub.add_parser("open", help="verify a bundle and keep it encrypted in the van (LFR_VAN_* settings)")
    opening.add_argument("file", type=Path)
    opening.set_defaults(func=_open)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _van_settings():
    from services.common.settings import load_settings

    from .settings import VanSettings

    return load_settings(VanSettings)


def _passphrase(settings) -> str:
    from services.common.errors import SettingsError

    if settings.van_key_passphrase is None:
        raise SettingsError("LFR_VAN_KEY_PASSPHRASE is required: the van key is stored encrypted")
    return settings.van_key_passphrase.get_secret_value()


def _keygen(args: argparse.Namespace) -> int:
    from .vankey import VanKey

    key = VanKey.generate(args.van_id)
    private, public = args.out_dir / f"{args.van_id}.key.json", args.out_dir / f"{args.van_id}.pub.json"
    key.save(private, _passphrase(_van_settings()))
    public.write_text(key.public().to_json(), encoding="utf-8")
    print(json.dumps({"van_id": key.van_id, "key_id": key.public().key_id, "private_key_file": str(private), "public_key_file": str(public)}))
    return 0


def open_store(settings, outbox=None):
    """The van's bundle store from its settings (key, trusted keyring, state folder)."""
    from services.governance.audit.identity import load_keyring
    from services.common.errors import SettingsError
    from services.common.signing import KeyFileError

    from .vankey import VanKey
    from .vanstore import VanBundleStore

    if settings.van_key_file is None:
        raise SettingsError("LFR_VAN_KEY_FILE is required (create one with `lfr van keygen`)")
    try:
        van_key = VanKey.load(settings.van_key_file, _passphrase(settings))
    except KeyFileError as exc:
        raise SettingsError(f"LFR_VAN_KEY_FILE: {exc}") from None
    if van_key.van_id != settings.van_id:
        raise SettingsError(f"LFR_VAN_KEY_FILE belongs to van {van_key.van_id!r}, LFR_VAN_ID is {settings.van_id!r}")
    return VanBundleStore(settings.van_state_dir, van_key, settings.force, load_keyring(settings), outbox, settings.audit_topic)


def _outbox(settings):
    from services.van.link.outbox import Outbox

    return Outbox(settings.van_state_dir / "outbox.sqlite")


def _open(args: argparse.Namespace) -> int:
    from .bundle import describe

    settings = _van_settings()
    store = open_store(settings, _outbox(settings))
    store.erase_due(_now_ms())  # a van that was off past a window erases before it takes anything in
    header = store.take_in(args.file.read_bytes(), _now_ms())
    print(json.dumps(describe(header)))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "fleet.py"
    if not path.exists():
        print(f"lfr fleet simulate: {path} not found (it ships with the repository, not the image)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("openlfr_fleet_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--vans", str(args.vans), "--forces", str(args.forces), "--rate", str(args.rate), "--seconds", str(args.seconds),
            "--cut-s", str(args.cut_s), *(["--smoke"] if args.smoke else []), *(["--out", str(args.out)] if args.out else [])]
    return module.main(argv)


def _run(args: argparse.Namespace) -> int:
    from .van import run_van

    return run_van(args.workdir)


def _erase_due(_args: argparse.Namespace) -> int:
    from dataclasses import asdict

    settings = _van_settings()
    for erasure in open_store(settings, _outbox(settings)).erase_due(_now_ms()):
        print(json.dumps(asdict(erasure)))
    return 0


def _heartbeat(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from services.common.kafka_config import producer_config
    from services.common.metrics import build_version
    from services.common.settings import load_settings
    from services.van.link.outbox import Outbox

    from .heartbeat import build_heartbeat, publish_heartbeat
    from .settings import HeartbeatSettings
    from .vanstore import held_bundles

    settings = load_settings(HeartbeatSettings)
    producer = Producer(producer_config(settings))
    sent = 0
    while args.count == 0 or sent < args.count:
        if sent:
            time.sleep(settings.heartbeat_interval_s)
        outbox = Outbox(settings.link_outbox_path) if settings.link_outbox_path.exists() else None
        try:
            body = build_heartbeat(
                van_id=settings.van_id, force=settings.force, now_ms=_now_ms(), held=held_bundles(settings.van_state_dir),
                cameras={},  # stand-alone: no ingest to read; `lfr van run` reports the cameras' frame rates
                backlog=outbox.backlog() if outbox else None, last_ack_ms=outbox.last_ack_ms() if outbox else None,
                down_after_s=settings.link_down_after_s, disk_path=_existing(settings.van_state_dir), version=build_version(),
                build=settings.build_id)
        finally:
            if outbox is not None:
                outbox.close()
        publish_heartbeat(producer, settings.heartbeat_topic, body)
        print(json.dumps({k: body[k] for k in ("van_id", "at_ms", "link")}), flush=True)
        sent += 1
    return 0


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _inspect(args: argparse.Namespace) -> int:
    import os

    from .bundle import BundleRefused, SealedBundle, describe

    sealed = SealedBundle.parse(args.file.read_bytes())
    shown = describe(sealed.header())
    if os.environ.get("LFR_KEYRING_FILE"):
        from services.common.signing import Keyring, SignatureRefused

        try:
            Keyring.load(Path(os.environ["LFR_KEYRING_FILE"])).verify_message(shown["signer_key_id"], sealed.signed_bytes, sealed.signature)
            shown["signature"] = "valid"
        except SignatureRefused as refusal:
            raise BundleRefused("tampered" if refusal.reason == "bad_signature" else refusal.reason) from None
    print(json.dumps(shown))
    return 0


def _build(args: argparse.Namespace) -> int:
    from services.governance.audit.identity import load_keyring, load_signer
    from services.common.settings import load_settings
    from services.governance.deployments.store import DeploymentStore
    from services.governance.watchlist.thresholds import Thresholds

    from .bundle import BundleContents, BundleError, build_bundle
    from .settings import BundleBuildSettings
    from .vankey import VanPublicKey

    settings = load_settings(BundleBuildSettings)
    store = DeploymentStore(settings)
    deployment = store.read_all().get(args.deployment)
    if deployment is None:
        raise BundleError(f"no deployment {args.deployment}")
    wanted = deployment.snapshot.entry_versions if deployment.snapshot else frozenset()
    from services.governance.deployments.snapshot import entry_version

    entries = tuple(e for e in store.watchlist.read_all().values() if entry_version(e) in wanted)
    if len(entries) != len(wanted):
        raise BundleError(f"{len(wanted) - len(entries)} of the snapshot's entries are no longer in the watchlist")
    contents = BundleContents(deployment, entries, Thresholds.parse(settings.match_threshold_default, settings.match_thresholds),
                              tuple(load_keyring(settings).keys()))
    raw = build_bundle(contents, VanPublicKey.load(args.van_key), settings.force, load_signer(settings),
                       grace_ms=settings.bundle_grace_s * 1000)
    args.out.write_bytes(raw)
    print(json.dumps({"out": str(args.out), "bytes": len(raw), "entries": len(entries), "deployment_id": deployment.deployment_id}))
    return 0


def _build_due(args: argparse.Namespace) -> int:
    from services.governance.audit.identity import load_keyring, load_signer
    from services.common.settings import load_settings
    from services.governance.deployments.store import DeploymentStore
    from services.governance.watchlist.thresholds import Thresholds

    from .bundler import build_due
    from .settings import BundleBuildSettings

    settings = load_settings(BundleBuildSettings)
    store, signer = DeploymentStore(settings), load_signer(settings)
    thresholds = Thresholds.parse(settings.match_threshold_default, settings.match_thresholds)
    while True:
        for made in build_due(store.read_all(), store.watchlist.read_all(), force=settings.force, signer=signer,
                              keyring=tuple(load_keyring(settings).keys()), thresholds=thresholds, grace_ms=settings.bundle_grace_s * 1000,
                              van_keys_dir=settings.bundle_van_keys_dir, store_dir=settings.bundle_store_dir, now_ms=_now_ms()):
            print(json.dumps({"deployment_id": made.deployment_id, "van_id": made.van_id, "out": str(made.path), "bytes": made.bytes}), flush=True)
        if args.every <= 0:
            return 0
        time.sleep(args.every)
