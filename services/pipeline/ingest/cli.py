"""`lfr cameras add|remove|list`: edit the cameras file; a running ingest service picks it up.

Every change is audited (signed, chained) before the file is written: no audit, no change."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cameras import CameraConfig, load_cameras, redact, save_cameras


def register(commands: argparse._SubParsersAction) -> None:
    cameras = commands.add_parser("cameras", help="add, remove or list cameras (applied live by ingest)")
    cameras.add_argument("--file", type=Path, default=None, help="cameras file (default: LFR_CAMERAS_FILE or cameras.json)")
    sub = cameras.add_subparsers(dest="cameras_command", required=True)
    add = sub.add_parser("add", help="add or replace a camera")
    add.add_argument("--id", required=True)
    add.add_argument("--deployment", required=True)
    add.add_argument("--source", required=True, help="video file, rtsp:// or http(s):// URL, folder:<dir>, or synthetic:crowd")
    add.add_argument("--fps", type=float, default=10.0)
    add.add_argument("--max-width", type=int, default=1920)
    add.add_argument("--max-height", type=int, default=1080)
    add.add_argument("--jpeg-quality", type=int, default=85)
    add.add_argument("--synthetic", default="{}", help="JSON options of the synthetic crowd camera")
    add.set_defaults(func=_add)
    remove = sub.add_parser("remove", help="remove a camera")
    remove.add_argument("--id", required=True)
    remove.set_defaults(func=_remove)
    sub.add_parser("list", help="list cameras (credentials redacted)").set_defaults(func=_list)


def _path(args: argparse.Namespace) -> Path:
    return args.file or Path(os.environ.get("LFR_CAMERAS_FILE", "cameras.json"))


def _add(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        camera = CameraConfig(id=args.id, deployment_id=args.deployment, source=args.source, fps=args.fps, max_width=args.max_width,
                              max_height=args.max_height, jpeg_quality=args.jpeg_quality, synthetic=json.loads(args.synthetic))
    except (ValueError, TypeError) as exc:
        print(f"lfr cameras add: {exc}", file=sys.stderr)
        return 2
    cameras = load_cameras(path)
    action = "camera.update" if camera.id in cameras else "camera.add"
    path.parent.mkdir(parents=True, exist_ok=True)  # a file problem is reported before anything is audited
    if not _audit(action, camera.id, {"deployment_id": camera.deployment_id, "source": redact(camera.source), "fps": camera.fps,
                                      "cameras_file": str(path)}):
        return 1
    cameras[camera.id] = camera
    save_cameras(path, cameras)
    print(f"camera {camera.id} saved to {path}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = _path(args)
    cameras = load_cameras(path)
    removed = cameras.pop(args.id, None)
    if removed is None:
        print(f"lfr cameras remove: no camera {args.id} in {path}", file=sys.stderr)
        return 1
    if not _audit("camera.remove", args.id, {"deployment_id": removed.deployment_id, "cameras_file": str(path)}):
        return 1
    save_cameras(path, cameras)
    print(f"camera {args.id} removed from {path}")
    return 0


def _audit(action: str, camera_id: str, details: dict) -> bool:
    from services.governance.audit.writer import audited
    from services.common.errors import SettingsError

    try:
        audited(action, camera_id, details, "cameras")
    except (SettingsError, RuntimeError, TimeoutError) as exc:
        print(f"lfr cameras: not changed, the audit record could not be written: {exc}", file=sys.stderr)
        return False
    return True


def _list(args: argparse.Namespace) -> int:
    cameras = load_cameras(_path(args))
    print(f"{'CAMERA':<20} {'DEPLOYMENT':<16} {'FPS':>5} {'MAX SIZE':>10}  SOURCE")
    for c in cameras.values():
        print(f"{c.id:<20} {c.deployment_id:<16} {c.fps:>5g} {f'{c.max_width}x{c.max_height}':>10}  {redact(c.source)}")
    return 0
