"""benchmarks/security.py runs end to end at tiny sizes (times nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_security_benchmark_smoke(tmp_path):
    out = tmp_path / "security.json"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "security.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True and figures["watchlist_load"]["records"] == 50 and figures["audit_append"]["appends"] == 5
