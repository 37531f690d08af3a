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
