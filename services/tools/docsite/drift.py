"""Finds drift between the docs and the code, both ways (tests/test_docs_drift.py).

A page may not name an `lfr` command, an LFR_ setting, a metric, a topic or an alert rule the
code no longer has; and every one the code has must be documented: commands on the command-line
page, settings and metrics on their generated reference pages (kept fresh by `lfr docs --check`),
topics in the integrators' table, alert rules as runbook sections.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from services.tools.docsite import inventory

ROOT = inventory.ROOT
DOCS = ROOT / "docs"
CLI_PAGE = DOCS / "reference" / "cli.md"
TOPICS_TABLE_PAGE = DOCS / "integrators" / "index.md"
RUNBOOK = DOCS / "runbook.md"
SETTINGS_PAGE = DOCS / "reference" / "settings.md"
METRICS_PAGE = DOCS / "reference" / "metrics.md"

# `helm install lfr helm/openlfr`: a release named lfr, not a command.
_COMMAND = re.compile(r"(?<!install )(?<!upgrade )(?<!test )(?<!uninstall )\blfr ([a-z][a-z-]*)(?: ([a-z][a-z-]*(?:\|[a-z][a-z-]*)*))?")
_SETTING = re.compile(r"\bLFR_[A-Z0-9_]*[A-Z0-9]\b")
_METRIC = re.compile(r"\blfr_[a-z0-9_]*[a-z0-9]\b")
_TOPIC = re.compile(r"\blfr\.([a-z_]+)\.v(\d+)\b|\blfr-dispatch-open-alerts-changelog\b")
_ENV_READ = re.compile(r"(?:environ\.get\(|environ\[|getenv\(|setdefault\()\s*[\"'](LFR_[A-Z0-9_]+)[\"']")
_RULE = re.compile(r"\bOpenLFR[A-Z][A-Za-z]+\b")
_METRIC_SUFFIXES = ("_bucket", "_sum", "_count", "_created")

# Names the docs may use although the code's declarations lack them, each with why. Keep short.
KNOWN_GAPS = {
}


def pages() -> dict[str, str]:
    """Every page of the site and the README, by path relative to the repository."""
    found = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))}
    found["README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    return found


def command_mentions(text: str) -> set[str]:
    """`lfr a b|c` -> {"a", "a b", "a c"}; a second word is kept only when `a` has subcommands."""
    paths = set(inventory_commands())
    found: set[str] = set()
    for top, rest in _COMMAND.findall(text):
        found.add(top)
        if rest and any(p.startswith(top + " ") for p in paths):
            found.update(f"{top} {word}" for word in rest.split("|"))
    return found


@cache
def inventory_commands() -> tuple[str, ...]:
    return tuple(inventory.commands())


@cache
def _literals() -> frozenset[str]:
    return frozenset(inventory.string_literals())


@cache
def _env_names_outside_settings() -> frozenset[str]:
    """LFR_ names read directly (os.environ, getenv) by services, tests or benchmarks, or set by the Makefile."""
    names: set[str] = set()
    for base in ("services", "tests", "benchmarks"):
        for path in (ROOT / base).rglob("*.py"):
            names.update(_ENV_READ.findall(path.read_text(encoding="utf-8")))
    names.update(_SETTING.findall((ROOT / "Makefile").read_text(encoding="utf-8")))
    return frozenset(names)


def documented_but_gone(text_by_page: dict[str, str]) -> list[str]:
    """What pages name that the code does not have, as one line per finding."""
    commands = set(inventory_commands())
    settings = set(inventory.settings())
    metrics = set(inventory.metrics())
    topics = set(inventory.topics())
    families = {}
    for name in topics:
        m = re.fullmatch(r"lfr\.([a-z_]+)\.v(\d+)", name)
        if m:
            families[m.group(1)] = int(m.group(2))
    rules = {r["alert"] for r in inventory.alert_rules()}
    other_env = _env_names_outside_settings()
    literals = _literals()
    findings = []
    for page, text in text_by_page.items():
        for path in sorted(command_mentions(text) - commands):
            findings.append(f"{page}: command `lfr {path}` does not exist")
        for env in sorted(set(_SETTING.findall(text)) - settings - other_env):
            findings.append(f"{page}: setting {env} is read by no settings class or code")
        for name in sorted(set(_METRIC.findall(text))):
            base = next((name[: -len(s)] for s in _METRIC_SUFFIXES if name.endswith(s) and name[: -len(s)] in metrics), name)
            if base not in metrics and name not in literals:
                findings.append(f"{page}: metric {name} is exported by no service")
        for match in _TOPIC.finditer(text):
            if match.group(1) is None:
                continue
            family, version = match.group(1), int(match.group(2))
            if match.group(0) not in topics and match.group(0) not in KNOWN_GAPS and not (family in families and version < families[family]):
                findings.append(f"{page}: topic {match.group(0)} is not in topics.toml (nor an older version of one)")
        for rule in sorted(set(_RULE.findall(text)) - rules):
            findings.append(f"{page}: alert rule {rule} is not in the rules file")
    return sorted(set(findings))


def in_code_but_undocumented() -> list[str]:
    """What the code has that its page does not document, as one line per finding."""
    findings = []
    documented = command_mentions(CLI_PAGE.read_text(encoding="utf-8"))
    commands = set(inventory_commands())
    for path in sorted(commands - documented):
        has_subcommands = any(p.startswith(path + " ") for p in commands)
        if not has_subcommands:
            findings.append(f"command `lfr {path}` is not on docs/reference/cli.md")
    settings_text = SETTINGS_PAGE.read_text(encoding="utf-8") if SETTINGS_PAGE.exists() else ""
    findings += [f"setting {env} is not on docs/reference/settings.md (run `lfr docs`)"
                 for env in inventory.settings() if f"`{env}`" not in settings_text]
    metrics_text = METRICS_PAGE.read_text(encoding="utf-8") if METRICS_PAGE.exists() else ""
    findings += [f"metric {name} is not on docs/reference/metrics.md (run `lfr docs`)"
                 for name in inventory.metrics() if f"`{name}`" not in metrics_text]
    table = TOPICS_TABLE_PAGE.read_text(encoding="utf-8")
    findings += [f"topic {name} is not in the table of docs/integrators/index.md"
                 for name in inventory.topics() if not re.search(rf"^\|[^\n]*\b{re.escape(name)}\b", table, re.MULTILINE)]
    runbook = RUNBOOK.read_text(encoding="utf-8")
    findings += [f"alert rule {r['alert']} has no section in docs/runbook.md"
                 for r in inventory.alert_rules() if not re.search(rf"^## {r['alert']}$", runbook, re.MULTILINE)]
    return findings


def check(root_pages: dict[str, str] | None = None) -> list[str]:
    return documented_but_gone(root_pages if root_pages is not None else pages()) + in_code_but_undocumented()
