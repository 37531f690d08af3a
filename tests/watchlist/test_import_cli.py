"""`lfr watchlist import`: batched writes, a summary of enrolled, flagged and refused, progress lines."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np

from services.cli import main as lfr
from services.common.jsonevents import decode_record
from tests.kafka_helpers import create_topics, unique


def test_folder_import_batches_writes_and_ends_with_a_summary(lfw_dir, broker, monkeypatch, tmp_path, capsys, reader):
    watchlist, audit = unique("watchlist"), unique("audit")
    create_topics(broker.bootstrap_servers, watchlist, audit, partitions=1)
    monkeypatch.setenv("LFR_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("LFR_WATCHLIST_TOPIC", watchlist)
    monkeypatch.setenv("LFR_AUDIT_TOPIC", audit)
    folder = tmp_path / "subjects"
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[:3]
    for name in names:
        (folder / name).mkdir(parents=True)
        shutil.copy(next(iter(sorted((lfw_dir / name).iterdir()))), folder / name / "1.jpg")  # test-local copy, deleted by tmp_path
    (folder / "zz-blank").mkdir()
    cv2.imwrite(str(folder / "zz-blank" / "1.jpg"), np.full((200, 200, 3), 128, np.uint8))

    expires = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()  # within the lifetime cap
    code = lfr(["watchlist", "import", "--folder", str(folder), "--category", "suspect", "--priority", "amber",
                "--image-source", "custody", "--image-captured-at", "2024-01-01", "--legal-basis", "PACE s.64A",
                "--added-by", "PC 1", "--expires", expires, "--deployment", "van-1"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line.get("reason") for line in lines[:-1]] == [None, None, None, "no_face"], lines
    assert code == 3  # one refused
    assert lines[-1] == {"summary": {"enrolled": 3, "updated": 0, "flagged": 0, "refused": 1}}
    assert [line["status"] for line in lines[:-1]] == ["enrolled"] * 3 + ["refused"]
    assert "3 enrolled, 0 updated, 0 flagged as look-alikes, 1 refused" in captured.err
    assert "lfr watchlist import: 4/4 (100%)" in captured.err  # not a TTY: plain progress lines
    assert sorted(r.key().decode() for r in reader(watchlist).read_until(3)) == names
    assert {decode_record(r.value(), r.headers()).data["action"] for r in reader(audit).read_until(3)} == {"watchlist.add"}
