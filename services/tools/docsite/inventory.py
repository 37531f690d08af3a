"""What the code offers that the docs must name: `lfr` commands, LFR_ settings, metrics, topics, alert rules.

Read statically or from declarations (the argument parser, the settings classes, metric
constructors found by parsing the source, topics.toml, the Prometheus rules file), so taking the
inventory loads no model, broker or engine.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"
RULES_FILE = ROOT / "helm" / "openlfr" / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = ROOT / "helm" / "openlfr" / "files" / "grafana-dashboard.json"

_METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


def commands() -> list[str]:
    """Every `lfr` command path, e.g. "watchlist add", "broker", "run"."""
    from services.cli import build_parser

    paths: list[str] = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:  # noqa: SLF001 - argparse offers no public walk of subcommands
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for name, sub in action.choices.items():
                    path = f"{prefix} {name}".strip()
                    paths.append(path)
                    walk(sub, path)

    walk(build_parser(), "")
    return sorted(paths)


@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    default: str
    description: str
    classes: tuple[str, ...]


def settings_classes() -> list[type]:
    """Every settings class defined in a settings module of services/ (common/settings.py, link/settings.py, ...)."""
    import importlib

    from services.common.settings import LfrSettings

    classes = []
    for path in sorted(SERVICES.rglob("settings.py")):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        classes += [cls for _name, cls in inspect.getmembers(module, inspect.isclass)
                    if cls.__module__ == module.__name__ and issubclass(cls, LfrSettings)]
    return classes


def settings() -> dict[str, Setting]:
    """LFR_ variable -> its default, description and the settings classes that read it."""
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    from services.common.settings import ENV_PREFIX

    found: dict[str, Setting] = {}
    for cls in settings_classes():
        for field, info in cls.model_fields.items():
            env = (ENV_PREFIX + field).upper()
            default = info.default
            if default is PydanticUndefined:
                text = "required" if info.default_factory is None else "(computed)"
            elif isinstance(default, SecretStr):
                text = "(secret)"
            elif default is None:
                text = "unset"
            else:
                text = str(default.value if hasattr(default, "value") else default)
            old = found.get(env)
            classes = tuple(sorted({*(old.classes if old else ()), cls.__name__}))
            found[env] = Setting(env, text, " ".join((info.description or "").split()), classes)
    return dict(sorted(found.items()))


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # as exposed: a Counter's _total, an Info's _info
    kind: str
    help: str
    labels: tuple[str, ...]
    module: str


def _exposed(kind: str, name: str) -> str:
    if kind == "Counter" and not name.endswith("_total"):
        return name + "_total"
    if kind == "Info":
        return name + "_info"
    return name


@functools.cache
def _parsed() -> tuple[tuple[Path, ast.Module], ...]:
    """Every module of services/, parsed once per process."""
    return tuple((path, ast.parse(path.read_text(encoding="utf-8"), str(path))) for path in sorted(SERVICES.rglob("*.py")))


def metrics() -> dict[str, Metric]:
    """Every Prometheus metric constructed in services/, found by parsing the source."""
    found: dict[str, Metric] = {}
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if kind not in _METRIC_TYPES or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("lfr_")):
                continue
            doc = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "documentation"), None)
            labels_node = node.args[2] if len(node.args) > 2 else next((k.value for k in node.keywords if k.arg == "labelnames"), None)
            labels: tuple[str, ...] = ()
            if isinstance(labels_node, (ast.List, ast.Tuple)):
                labels = tuple(e.value for e in labels_node.elts if isinstance(e, ast.Constant))
            help_text = _string(doc)
            name = _exposed(kind, first.value)
            found[name] = Metric(name, kind.lower(), " ".join(help_text.split()), labels,
                                 str(path.relative_to(ROOT)))
    return dict(sorted(found.items()))


def _string(node: ast.AST | None) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{...}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string(node.left) + _string(node.right)
    return ""


def string_literals() -> set[str]:
    """Every string constant of services/ (header names, claims and other lfr_ words that are not metrics)."""
    found: set[str] = set()
    for _path, tree in _parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def topics() -> list[str]:
    """Every topic of services/common/topics.toml (force `default`'s names)."""
    from services.common.topics import load_topic_specs

    return sorted(spec.name for spec in load_topic_specs())


def alert_rules() -> list[dict]:
    """Every alerting rule of the Prometheus rules file: alert, expr, for, severity, summary, runbook_url."""
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    groups = document.get("groups") or document.get("spec", {}).get("groups", [])
    rules = []
    for group in groups:
        for rule in group.get("rules", []):
            if "alert" in rule:
                rules.append({"alert": rule["alert"], "expr": " ".join(str(rule["expr"]).split()),
                              "for": rule.get("for", ""), "severity": rule.get("labels", {}).get("severity", ""),
                              "summary": rule.get("annotations", {}).get("summary", ""),
                              "runbook_url": rule.get("annotations", {}).get("runbook_url", "")})
    return rules
