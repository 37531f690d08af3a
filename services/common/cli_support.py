"""Conventions every `lfr` command follows: exit codes, one-line errors, `--bootstrap-servers`.

Exit codes of `lfr` commands (docs/operations/index.md lists the same table; a test
keeps them in step):

    0    success
    1    the command ran and the answer is negative (nothing found, topics missing, ...)
         or an unexpected internal error (named in one line; LFR_TRACEBACK=1 prints the trace)
    2    usage or settings error (a bad argument, a bad LFR_* variable: named)
    3    refused: the command refused some input on purpose (watchlist enrolment refusals,
         dead letters whose payload was withheld, refused `lfr deployment` operations)
    4    Kafka unreachable, timed out or refused the request
    5    Qdrant unreachable or refused the request
    6    a file could not be read or written
    130  interrupted (Ctrl-C)

Services (`lfr run <service>`) exit 0 after a clean drain, 2 on bad settings, 3 when the drain
outlived LFR_SHUTDOWN_TIMEOUT_S and 1 on a failure they report themselves; an error that
escapes a service's own handling ends like any command's: one line, the family's code.

An exception class may carry its own ``exit_code`` attribute; otherwise its family decides.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_KAFKA = 4
EXIT_QDRANT = 5
EXIT_FILE = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "negative answer, or an unexpected internal error",
    EXIT_USAGE: "usage or settings error",
    EXIT_REFUSED: "some input refused on purpose",
    EXIT_KAFKA: "Kafka unreachable, timed out or refused",
    EXIT_QDRANT: "Qdrant unreachable or refused",
    EXIT_FILE: "a file could not be read or written",
    EXIT_INTERRUPTED: "interrupted",
}


def kafka_option(parser: argparse.ArgumentParser) -> None:
    """Every command that talks to Kafka takes this (it overrides LFR_KAFKA_BOOTSTRAP_SERVERS)."""
    parser.add_argument("--bootstrap-servers", default=None, help="host:port[,host:port]; overrides LFR_KAFKA_BOOTSTRAP_SERVERS")


def apply_kafka_option(args: argparse.Namespace) -> None:
    """One place turns the option into the setting every settings class reads."""
    value = getattr(args, "bootstrap_servers", None)
    if value:
        os.environ["LFR_KAFKA_BOOTSTRAP_SERVERS"] = value


def quiet_client_logs(command: str) -> None:
    """Admin commands: librdkafka's retry chatter (dozens of lines per unreachable broker) stays
    out of the way; the command's own one-line error names the cause. Services keep it (JSON)."""
    if command != "run" and os.environ.get("LFR_LOG_LEVEL", "").upper() != "DEBUG":
        import logging  # noqa: PLC0415

        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)


def _family(exc: BaseException) -> tuple[int, str]:
    from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415 - only on the error path

    from .errors import LfrError, SettingsError  # noqa: PLC0415

    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code, ""
    if isinstance(exc, SettingsError):
        return EXIT_USAGE, ""
    if isinstance(exc, (KafkaException, KafkaError)):
        return EXIT_KAFKA, "Kafka: "
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return EXIT_KAFKA, "timed out or unreachable: "
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse  # noqa: PLC0415

        if isinstance(exc, (UnexpectedResponse, ResponseHandlingException)):
            return EXIT_QDRANT, "Qdrant: "
    except ImportError:  # pragma: no cover - qdrant-client is a dependency
        pass
    if isinstance(exc, OSError):
        return EXIT_FILE, ""
    if isinstance(exc, (ValueError, LfrError)):
        return EXIT_USAGE, ""
    return EXIT_FAILED, f"internal error ({type(exc).__name__}): "


def describe(exc: BaseException) -> str:
    if hasattr(exc, "args") and exc.args and hasattr(exc.args[0], "str"):
        return exc.args[0].str()  # a KafkaError inside a KafkaException: its own text
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return text


def report_error(command: str, exc: BaseException) -> int:
    """Print one line naming the cause; return the exit code of its family."""
    code, prefix = _family(exc)
    print(f"lfr {command}: {prefix}{describe(exc)}".rstrip(), file=sys.stderr)
    if os.environ.get("LFR_TRACEBACK") == "1":
        import traceback  # noqa: PLC0415

        traceback.print_exception(exc)
    return code
