"""Where the demo finds face photos, and how to get Labeled Faces in the Wild when they are missing.

LFW is a research benchmark without an open licence: it is downloaded by the user, kept outside
the repository, and never copied into an image or a release.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

LFW_URL = "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz"
# The checksum torchvision's LFW loader publishes for this archive.
LFW_MD5 = "68331da3eb755a505a502b5aacb3c201"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "datasets" / "lfw-dev"

HOW_TO_GET_LFW = f"""No face data found. The demo needs a folder of identity folders (the Labeled Faces in the
Wild layout: <dir>/<Person_Name>/<Person_Name>_0001.jpg). Either
  - pass --data DIR or set LFR_DATA_DIR, or
  - download LFW (research use only; about 110 MB) with:
      .venv/bin/python -m services.tools.demo.dataset DEST_DIR
    which fetches {LFW_URL}, checks its MD5 and unpacks it, then run
      .venv/bin/lfr demo --data DEST_DIR/lfw-deepfunneled
Never copy the photos into this repository, a container image or a release."""


def resolve_data_dir(explicit: Path | None) -> Path | None:
    for candidate in (explicit, Path(os.environ["LFR_DATA_DIR"]) if os.environ.get("LFR_DATA_DIR") else None, DEFAULT_DATA_DIR):
        if candidate is not None and candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    return None


def download_lfw(dest: Path) -> Path:
    """Download, verify and unpack LFW (deep-funnelled) under ``dest``; returns the identity folder root."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "lfw-deepfunneled.tgz"
    if not archive.exists():
        partial = archive.with_suffix(".part")
        urllib.request.urlretrieve(LFW_URL, partial)  # noqa: S310 - fixed https/http URL of the data set
        partial.rename(archive)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324 - the published checksum is MD5
    if digest != LFW_MD5:
        archive.unlink()
        raise ValueError(f"LFW archive checksum mismatch: got {digest}, expected {LFW_MD5}; the damaged file was removed")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "lfw-deepfunneled"


if __name__ == "__main__":
    import sys

    print(download_lfw(Path(sys.argv[1] if len(sys.argv) > 1 else "lfw")))
