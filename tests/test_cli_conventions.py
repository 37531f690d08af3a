"""`lfr` conventions: --version, one-line errors with documented exit codes, --bootstrap-servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import build_parser, main
from services.common import cli_support
from services.common.broker import free_port

ROOT = Path(__file__).resolve().parent.parent

#: every command that talks to Kafka
KAFKA_COMMANDS = [
    ["topics", "apply"], ["topics", "describe"], ["run", "detect"],
    ["watchlist", "add", "--subject", "s", "--reference", "r", "--image", "x.jpg", "--category", "suspect", "--priority", "red"],
    ["watchlist", "import", "--folder", "f"], ["watchlist", "remove", "--subject", "s", "--actor", "a", "--reason", "r"],
    ["watchlist", "list"], ["watchlist", "purge-expired"],
    ["dlq", "list"], ["dlq", "show", "0:1"], ["dlq", "replay", "--all", "--actor", "a", "--why", "w"],
    ["forces", "list"], ["forces", "show", "gmp"], ["forces", "add", "--id", "gmp", "--controller", "dpo@gmp.example"],
]


def lfr(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("argv", KAFKA_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_kafka_command_takes_bootstrap_servers(argv):
    args = build_parser().parse_args([*argv, "--bootstrap-servers", "kafka-1:9092,kafka-2:9092"])
    assert args.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and re.fullmatch(r"lfr \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_an_unreachable_broker_ends_in_one_line_and_exit_4():
    result = lfr("dlq", "list", "--bootstrap-servers", f"127.0.0.1:{free_port()}", env={"LFR_DLQ_READ_TIMEOUT_S": "2"})
    assert result.returncode == cli_support.EXIT_KAFKA, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lfr dlq: Kafka: ") and "Traceback" not in result.stderr


def test_a_bad_setting_ends_in_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("LFR_DLQ_READ_TIMEOUT_S", "-1")
    assert main(["dlq", "list"]) == cli_support.EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "LFR_DLQ_READ_TIMEOUT_S" in err


def test_a_missing_file_ends_in_one_line_and_exit_6(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    code = main(["cameras", "--file", str(tmp_path / "a-file" / "cameras.json"), "add", "--id", "c",
                 "--deployment", "d", "--source", "synthetic:crowd"])
    err = capsys.readouterr().err
    assert code == cli_support.EXIT_FILE, err
    assert len(err.strip().splitlines()) == 1 and "a-file" in err


@pytest.mark.parametrize("exc, code", [
    (TimeoutError("x"), cli_support.EXIT_KAFKA), (FileNotFoundError(2, "No such file", "a.csv"), cli_support.EXIT_FILE),
    (ValueError("bad"), cli_support.EXIT_USAGE), (KeyError("bug"), cli_support.EXIT_FAILED),
])
def test_exception_families_map_to_exit_codes(exc, code, capsys):
    assert cli_support.report_error("x", exc) == code
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_the_operations_page_lists_every_exit_code():
    page = (ROOT / "docs" / "operations" / "index.md").read_text(encoding="utf-8")
    for code in cli_support.EXIT_CODES:
        assert re.search(rf"^\| `{code}` \|", page, re.MULTILINE), f"exit code {code} not in docs/operations/index.md's table"


def test_a_service_that_cannot_start_exits_1_with_one_line_naming_the_cause():
    result = lfr("run", "detect", "--bootstrap-servers", f"127.0.0.1:{free_port()}",
                 env={"LFR_DEPLOYMENTS_LOAD_TIMEOUT_S": "2", "LFR_METRICS_PORT": "0"})
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot start" in last and "deployments not loaded" in last and "Traceback" not in result.stderr


def test_building_the_command_line_loads_no_engine():
    """`lfr --version` and every `--help` build the whole parser: the face engine (onnx,
    onnxruntime), Qdrant's client and the settings (pydantic) load only when a command runs.
    Before, the parser pulled them all in and `lfr --version` took about 4 s on this machine."""
    import subprocess
    import sys

    heavy = ("onnx", "onnxruntime", "qdrant_client", "cv2", "pydantic_settings")
    code = ("import sys; from services.cli import build_parser; build_parser(); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"building the parser imported {loaded}"
