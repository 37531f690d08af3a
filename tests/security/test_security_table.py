"""The security page's table (docs/assurance/security.md) has a row for every governed topic of topics.toml (issue #23), and
each row names who writes it and which reader verifies it, so the table cannot drift from the
topics."""

from __future__ import annotations

import re

from services.common.topics import load_topic_specs
from tests.conftest import PROJECT_ROOT


def security_rows() -> dict[str, list[str]]:
    page = (PROJECT_ROOT / "docs" / "assurance" / "security.md").read_text(encoding="utf-8")
    table = page[page.index("| topic | written by | read, verified, by |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[re.sub(r"^`([^`]+)`.*$", r"\1", cells[0])] = cells
    return rows


def test_every_governed_topic_has_a_row_saying_who_writes_and_who_verifies():
    governed = {spec.name for spec in load_topic_specs() if spec.governed}
    assert {"lfr.watchlist.v1", "lfr.deployments.v1", "lfr.audit.v2", "lfr.forces.v1"} <= governed
    rows = security_rows()
    assert governed <= set(rows), f"governed topics without a row in docs/assurance/security.md: {sorted(governed - set(rows))}"
    for topic in governed:
        _name, writers, readers = rows[topic]
        assert writers and readers, topic
    topics = {spec.name for spec in load_topic_specs()}
    stale = {name for name in rows if name.startswith("lfr.") and name not in governed}
    assert not stale, f"rows for topics that are not governed (or no longer exist): {sorted(stale)} of {sorted(topics)}"
