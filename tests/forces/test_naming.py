"""Force ids and the per-force topic naming scheme (services/governance/forces/naming.py)."""

from __future__ import annotations

import pytest

from services.common.topics import load_topic_specs
from services.governance.forces.naming import NamingError, check_force_id, check_topic_name, force_topic, topic_force

PLATFORM = [spec.name for spec in load_topic_specs()]


@pytest.mark.parametrize("force", ["gmp", "wyp", "beds", "surrey", "sussex", "tvp", "hampshire", "thames-valley", "f2", "default"])
def test_usable_ids(force):
    assert check_force_id(force, PLATFORM) == force


@pytest.mark.parametrize("force, why", [
    ("g", "2-32"), ("GMP", "lowercase"), ("gm_p", "lowercase"), ("gm.p", "lowercase"), ("2gmp", "letter"),
    ("gm--p", "single hyphens"), ("gmp-", "hyphen"), ("x" * 33, "2-32"), ("", "2-32"),
    ("national", "reserved"), ("platform", "reserved"),
    ("frames", "platform topic"), ("forces", "platform topic"), ("evidence", "platform topic"), ("deployments", "platform topic"),
])
def test_ids_that_cannot_be_a_topic_prefix_are_refused_naming_the_rule(force, why):
    with pytest.raises(NamingError, match=why):
        check_force_id(force, PLATFORM)


def test_force_topics_live_under_the_force_prefix_and_default_keeps_todays_names():
    assert force_topic("gmp", "lfr.alerts.v2") == "lfr.gmp.alerts.v2"
    assert force_topic("gmp", "lfr-dispatch-open-alerts-changelog") == "lfr.gmp.dispatch-open-alerts-changelog"
    assert force_topic("default", "lfr.alerts.v2") == "lfr.alerts.v2"
    for name in PLATFORM:
        assert topic_force(name) == "default"
        assert topic_force(force_topic("tvp", name)) == "tvp"
        assert force_topic("tvp", name).startswith("lfr.tvp.")


def test_no_force_prefix_covers_another_forces_or_the_platforms_topics():
    forces = ["gm", "gmp", "gmp-east", "surrey", "sussex"]
    for a in forces:
        for b in forces:
            for name in PLATFORM:
                assert force_topic(b, name).startswith(f"lfr.{a}.") == (a == b), (a, b, name)
        assert not any(name.startswith(f"lfr.{a}.") for name in PLATFORM)


@pytest.mark.parametrize("name", ["alerts", "lfr.alerts", "lfr.Alerts.v2", "__consumer_offsets", "lfr.gmp.alerts.v0",
                                  "other.gmp.alerts.v2", "lfr..alerts.v2", "lfr.GMP.alerts.v2", "lfr.national.alerts.v2"])
def test_names_outside_the_scheme_are_refused(name):
    with pytest.raises(NamingError, match="outside the naming scheme|reserved"):
        check_topic_name(name, platform=PLATFORM)


def test_a_prefixed_name_needs_a_registered_force_and_may_not_shadow_one():
    assert check_topic_name("lfr.gmp.alerts.v2", {"default", "gmp"}, PLATFORM)
    with pytest.raises(NamingError, match="not registered"):
        check_topic_name("lfr.wyp.alerts.v2", {"default", "gmp"}, PLATFORM)
    with pytest.raises(NamingError, match="platform topic"):
        check_topic_name("lfr.frames.alerts.v2", None, PLATFORM)
    with pytest.raises(NamingError, match="is a force id"):
        check_topic_name("lfr.gmp.v1", {"default", "gmp"}, PLATFORM)


def test_topics_toml_itself_is_inside_the_scheme(tmp_path):
    bad = tmp_path / "topics.toml"
    bad.write_text('[topics."Alerts"]\npartitions = 1\n', encoding="utf-8")
    with pytest.raises(NamingError, match="outside the naming scheme"):
        load_topic_specs(bad)


def test_topics_apply_refuses_a_file_with_a_name_outside_the_scheme(tmp_path, capsys):
    from services.cli import main

    bad = tmp_path / "topics.toml"
    bad.write_text('[topics."lfr.alerts.v2"]\npartitions = 1\n[topics."gmp_alerts"]\npartitions = 1\n', encoding="utf-8")
    assert main(["topics", "apply", "--config", str(bad), "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'gmp_alerts' is outside the naming scheme" in err
