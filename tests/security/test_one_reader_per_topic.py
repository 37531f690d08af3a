"""Nothing reads a governed topic except through its verified reader (issue #23): a grep over
services/ for Kafka reads that name the watchlist, deployments or audit topic, and for decoding
a watchlist entry or a deployment record, outside the modules that verify what they read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(r"\b(read_to_end|read_records|read_topic|read_audit|assign_from_beginning|Consumer)\(")
GOVERNED = re.compile(r"\b(watchlist_topic|deployments_topic|audit_topic|forces_topic)\b|lfr\.(watchlist|deployments|audit|forces)\.v\d+")

# module -> what it must use to verify (None: reads without applying anything, with the reason)
READERS = {
    "services/governance/watchlist/materialiser.py": "VerifiedWatchlist",  # the matcher's index
    "services/governance/watchlist/store.py": "VerifiedWatchlist",  # lfr watchlist list, the authorised snapshot
    "services/operations/review/feeds.py": "VerifiedWatchlist",  # the console's reference images
    "services/operations/report/topics.py": "VerifiedDeployments",  # the transparency report (and VerifiedWatchlist)
    "services/governance/deployments/view.py": "VerifiedDeployments",  # every service's deployment view
    "services/governance/deployments/store.py": "VerifiedDeployments",  # lfr deployment
    "services/governance/deployments/projector.py": "VerifiedDeployments",  # lfr run deployment-events (public events)
    "services/governance/audit/cli.py": "verify_chain",  # lfr audit verify / show; reconcile lists unverified changes on purpose
    "services/governance/audit/writer.py": None,  # reads its own partition's tail only, to chain onto it
    "services/governance/forces/store.py": "SignatureGate",  # the force registry (issue #24)
    "services/governance/forces/migrate.py": None,  # counts records only (F's topics empty, the audit copied); entries and deployments through the stores
    "services/governance/privacy/audit.py": None,  # scans every record of every topic for biometric data, refused ones included
}
DECODERS = {
    # the van's bundle decodes entries only after the force's signature over the whole bundle verified
    "WatchlistEntry.from_data(": {"services/governance/watchlist/verified.py", "services/van/fleet/bundle.py"},
    "Deployment.from_data(": {"services/governance/deployments/view.py",  # view.parse, called only by deployments/verified.py
                              "services/van/fleet/bundle.py"},  # after the force's signature over the whole bundle verified
}


def sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted((ROOT / "services").rglob("*.py"))}


def test_governed_topics_are_read_only_through_their_verified_readers():
    found = {}
    for path, text in sources().items():
        if READS.search(text) and GOVERNED.search(text):
            found[path] = text
    unexpected = sorted(set(found) - set(READERS))
    assert not unexpected, f"these modules read a governed topic without its verified reader: {unexpected}"
    for path, text in found.items():
        needed = READERS[path]
        assert needed is None or needed in text, f"{path} reads a governed topic but does not use {needed}"


def test_watchlist_entries_and_deployments_are_decoded_only_by_the_verified_readers():
    for path, text in sources().items():
        for call, allowed in DECODERS.items():
            if call in text:
                assert path in allowed, f"{path} decodes {call[:-1]} itself instead of through the verified reader"
    view = (ROOT / "services/governance/deployments/view.py").read_text(encoding="utf-8")
    callers = [p for p, text in sources().items() if re.search(r"\bparse\(record\.value\(\)", text)]
    assert callers == ["services/governance/deployments/verified.py"], callers
    assert "VerifiedDeployments" in view


def test_every_verified_reader_is_given_the_audit_index():
    """Each construction of a verified reader passes an audit index (issue #23: the audit record a
    change names must exist and match in every reader, not only be named)."""
    call = re.compile(r"\b(VerifiedWatchlist|VerifiedDeployments|DeploymentView|SignatureGate)\(")
    for path, text in sources().items():
        for match in call.finditer(text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            arguments = text[match.end():end]
            assert re.search(r"\baudit_index=(?!None\b)", arguments), f"{path}: {match.group(0)} without audit_index: {arguments[:120]}"
