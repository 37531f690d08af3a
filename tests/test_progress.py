"""Progress: a tqdm bar with counts and time left on a terminal, short plain lines otherwise."""

from __future__ import annotations

import io

from services.common.progress import Progress, track


def test_plain_lines_when_not_a_terminal_with_counts_and_time_left():
    out = io.StringIO()
    with Progress("probes", total=4, stream=out, interval_s=0) as bar:
        bar.update()
        bar.update(3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("probes: 1/4 (25%), ") and "s left" in lines[0]
    assert lines[-1].startswith("probes: 4/4 (100%), ") and "done in" in lines[-1]
    assert "\r" not in out.getvalue()  # no bar redraws in logs


def test_plain_mode_is_quiet_between_intervals():
    out = io.StringIO()
    assert list(track(range(1000), "items", stream=out, interval_s=3600)) == list(range(1000))
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]  # only the final line
    assert "items: 1000/1000 (100%)" in out.getvalue()


def test_a_terminal_gets_a_tqdm_bar_with_time_left():
    out = io.StringIO()
    with Progress("import", total=10, unit="subject", stream=out, tty=True) as bar:
        bar.update(5)
    text = out.getvalue()
    assert "\r" in text and "import" in text and "10/10" not in text and "5/10" in text and "subject" in text


def test_report_shows_progress_over_every_record_it_reads(broker):
    """`lfr report` reads five topics to their ends: the bar's total is their record count."""
    from services.common.settings import ReportSettings, load_settings
    from services.operations.report.topics import read_inputs
    from tests.kafka_helpers import create_topics, produce, unique

    counts = unique("counts")
    create_topics(broker.bootstrap_servers, counts, partitions=2)
    produce(broker.bootstrap_servers, counts, [b"not an envelope"] * 7)
    settings = load_settings(ReportSettings, kafka_bootstrap_servers=broker.bootstrap_servers, counts_topic=counts,
                             alerts_topic=unique("missing"), adjudications_topic=unique("missing"),
                             watchlist_topic=unique("missing"), deployments_topic=unique("missing"))
    out = io.StringIO()
    with Progress("lfr report: reading topics", unit="record", stream=out, tty=False) as bar:
        inputs = read_inputs(settings, bar)
    assert inputs.counts == []  # unreadable records are skipped, and still counted as read
    assert (bar.count, bar.total) == (7, 7)
    assert "lfr report: reading topics: 7/7 (100%)" in out.getvalue()
