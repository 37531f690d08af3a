"""The console's queue under a busy stream, in headless chromium at 1280x720: while alert
revisions and new alerts reach the page every 100 ms (through the alerts topic and the console,
the path every alert takes), fifty clicks and fifty keyboard moves each select exactly the alert
under the pointer or next in order, no row the officer acts on is replaced or moves, a changed
alert updates its own row, and new alerts wait behind the notice until the officer brings them in.

Rows are tagged with a JS property and a MutationObserver counts rows removed from the queue: a
row rebuilt under the officer's pointer shows as a lost tag or a removal (#22)."""

from __future__ import annotations

import random

import pytest

from services.operations.review.users import UsersFile
from tests.kafka_helpers import wait_until

from .browser_helpers import chromium, sign_in
from .helpers import AlertFeed, review_settings, running_console

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
ACTIONS = 50

# Counts rows added to and removed from the queue from now on, and tags every row present.
WATCH = """
const queue = document.getElementById('queue');
if (!window.__queueLog) {
  window.__queueLog = {added: 0, removed: 0};
  window.__errors = [];
  addEventListener('error', (e) => __errors.push(String(e.message)));
  addEventListener('unhandledrejection', (e) => __errors.push(String(e.reason)));
  new MutationObserver((records) => {
    for (const r of records) { __queueLog.added += r.addedNodes.length; __queueLog.removed += r.removedNodes.length; }
  }).observe(queue, {childList: true});
}
__queueLog.added = 0; __queueLog.removed = 0;
"""
TAG = "for (const li of document.querySelectorAll('#queue li')) li.__officerTag = li.dataset.alertId;"
STATE = """
const rows = [...document.querySelectorAll('#queue li')];
const chosen = document.querySelector('#queue li.selected');
return {order: rows.map((li) => li.dataset.alertId), selected: chosen && chosen.dataset.alertId,
        untagged: rows.filter((li) => li.__officerTag !== li.dataset.alertId).length,
        log: window.__queueLog, errors: window.__errors, notice: (document.getElementById('new-alerts') || {}).textContent || ''};
"""
# A row fully visible in the queue's scroll area (not under its sticky header), other than the
# selected one: where its middle is on the screen, and which alert is there now.
PICK = """
const area = document.querySelector('section.queue').getBoundingClientRect();
const head = (document.querySelector('.queue-head') || document.querySelector('.queue h2')).getBoundingClientRect();
const rows = [...document.querySelectorAll('#queue li:not(.selected)')].filter((li) => {
  const r = li.getBoundingClientRect();
  return r.top >= head.bottom && r.bottom <= area.bottom;
});
const li = rows[Math.floor(arguments[0] * rows.length)];
const r = li.getBoundingClientRect();
return [Math.round(r.left + r.width / 2), Math.round(r.top + r.height / 2)];
"""
# Which row is under the pointer now; the page keeps that element to compare it afterwards.
UNDER = """
const li = document.elementFromPoint(arguments[0], arguments[1]).closest('#queue li');
window.__target = li;
window.__tops = new Map([...document.querySelectorAll('#queue li')].map((row) => [row, row.getBoundingClientRect().top]));
return li && [li.dataset.alertId, li.getBoundingClientRect().top];
"""
# The keyboard's next row in the current order; kept the same way.
NEXT = """
const rows = [...document.querySelectorAll('#queue li')];
const i = rows.findIndex((li) => li.classList.contains('selected'));
const next = rows[Math.min(rows.length - 1, Math.max(0, i + arguments[0]))];
window.__target = next; window.__from = rows[i];
return [rows[i].dataset.alertId, next.dataset.alertId];
"""
AFTER = """
const chosen = document.querySelector('#queue li.selected');
return chosen && {selected: chosen.dataset.alertId, same: chosen === window.__target, connected: window.__target.isConnected,
  fromConnected: !window.__from || window.__from.isConnected, tagged: chosen.__officerTag === chosen.dataset.alertId,
  top: chosen.getBoundingClientRect().top, detail: document.getElementById('f-reference').textContent,
  reference: chosen.querySelector('.ref').textContent, current: chosen.getAttribute('aria-current'),
  moved: window.__tops ? [...window.__tops].filter(([row, top]) => row.getBoundingClientRect().top !== top).length : 0};
"""


@pytest.fixture(scope="module")
def live_page(broker, tmp_path_factory, signing_identity):
    """One console, eight open alerts and one signed-in browser for the module."""
    with pytest.MonkeyPatch.context() as env:  # the console signs its audit records (conftest's key)
        for name, value in signing_identity.items():
            env.setenv(name, value)
        settings = review_settings(broker.bootstrap_servers, tmp_path_factory.mktemp("queue-live") / "review")
        settings = settings.model_copy(update={"public_url": f"http://localhost:{settings.http_port}"})
        UsersFile(settings.users_file).add("op1", PASSWORD, "operator", ("van-1",))
        with running_console(settings) as console:
            AlertFeed(broker.bootstrap_servers, settings, "open").open_alerts(8)
            wait_until(lambda: len(console.board.alerts) == 8, 20, "eight alerts on the board")
            driver = chromium()
            try:
                sign_in(driver, settings.public_url, "op1", PASSWORD)
                wait_until(lambda: len(driver.execute_script(STATE)["order"]) == 8, 20, "eight alerts in the queue")
                yield driver, console, settings
            finally:
                driver.quit()


def _in_step(driver, console, feed: AlertFeed) -> None:
    """Once the feed has stopped and the console has read all of it, the page knows every alert
    the console has, each row showing its alert's latest revision (a changed alert updates its own
    row), the rest behind the notice; brought in, the queue is the console's, newest first, and no
    row was ever removed."""
    def console_read_all() -> bool:
        with console.board.lock:
            return all(a in console.board.alerts and console.board.alerts[a].data["revision"] == r
                       for a, r in feed.latest().items())

    wait_until(console_read_all, 20, "the console read the whole feed")
    def newest_first() -> list[str]:
        with console.board.lock:
            return [v.alert_id for v in sorted(console.board.alerts.values(), key=lambda v: v.alert_at_ms, reverse=True)]

    def in_step() -> bool:  # the page may still be receiving the last events
        with console.board.lock:
            latest = {a: v.data["sightings"] for a, v in console.board.alerts.items()}
        state = driver.execute_script(STATE)
        held = int(state["notice"].split()[0]) if state["notice"] else 0
        shown = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#queue li')].map((li) => "
            "[li.dataset.alertId, +li.querySelector('.meta').textContent.match(/(\\d+) sighting/)[1]]))")
        return len(shown) + held == len(latest) and all(latest.get(a) == n for a, n in shown.items())

    wait_until(in_step, 20, "the page in step with the console")
    if driver.execute_script(STATE)["notice"]:
        driver.find_element("id", "new-alerts").click()
        wait_until(lambda: driver.execute_script(STATE)["notice"] == "", 5,
                   f"the new alerts brought in ({driver.execute_script(STATE)})")
    state = driver.execute_script(STATE)
    assert state["errors"] == [], "the page raised an error"
    assert state["order"] == newest_first()
    assert state["log"]["removed"] == 0, "a row was removed from the queue"


def _bring_in(driver, how: str) -> None:
    """The officer brings in the alerts waiting behind the notice: the newest is selected, every
    row already in the queue is the same element, and only new rows were added."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = driver.execute_script(STATE)
    if not before["notice"]:
        return
    if how == "click":
        driver.find_element("id", "new-alerts").click()
    else:
        ActionChains(driver).send_keys("n").perform()
    wait_until(lambda: driver.execute_script(STATE)["order"][0] not in before["order"], 5, "the new alerts brought in")
    after = driver.execute_script(STATE)
    assert after["selected"] == after["order"][0], "bringing new alerts in selects the newest"
    assert [a for a in after["order"] if a in before["order"]] == before["order"], "rows already there were reordered"
    assert after["untagged"] == len(after["order"]) - len(before["order"]), "a row already there was replaced"
    assert after["log"]["removed"] == 0
    driver.execute_script(TAG)


def _after_feed_moved(feed: AlertFeed, since: int) -> None:
    """At least one more record went to the page since the last action: every action overlaps the stream."""
    wait_until(lambda: feed.sent > since, 5, "the feed's next record")


def test_fifty_clicks_select_the_alert_under_the_pointer_while_alerts_stream_in(live_page, broker):
    from selenium.webdriver.common.action_chains import ActionBuilder

    driver, console, settings = live_page
    driver.execute_script(WATCH + TAG)
    feed = AlertFeed(broker.bootstrap_servers, settings, "click")
    feed.start()
    rng = random.Random(2201)
    held_seen = False
    try:
        for i in range(ACTIONS):
            if i and i % 10 == 0:
                _bring_in(driver, "click")
            sent = feed.sent
            x, y = driver.execute_script(PICK, rng.random())
            pointer = ActionBuilder(driver)
            pointer.pointer_action.move_to_location(x, y)
            pointer.perform()
            alert_id, top = driver.execute_script(UNDER, x, y)
            previous = driver.execute_script(STATE)["selected"]
            pointer = ActionBuilder(driver)
            pointer.pointer_action.click()
            pointer.perform()
            wait_until(lambda: driver.execute_script(STATE)["selected"] != previous, 5, f"click {i}: a new selection")
            after = driver.execute_script(AFTER)
            assert after["selected"] == alert_id, f"click {i}: selected another alert than the one under the pointer"
            assert after["same"] and after["connected"] and after["tagged"], f"click {i}: the clicked row was replaced"
            assert after["top"] == top and after["moved"] == 0, f"click {i}: the clicked row or another row moved"
            assert after["detail"] == after["reference"] and after["current"] == "true"
            held_seen = held_seen or bool(driver.execute_script(STATE)["notice"])
            _after_feed_moved(feed, sent)
    finally:
        feed.stop()
    _in_step(driver, console, feed)
    assert held_seen, "no new alert waited behind the notice during the clicks"
    assert feed.updates >= ACTIONS // 2 and feed.new >= 5, (feed.updates, feed.new)


def test_fifty_keyboard_moves_select_the_next_alert_in_order_while_alerts_stream_in(live_page, broker):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver, console, settings = live_page
    driver.execute_script("document.getElementById('queue').focus({preventScroll: true})")
    driver.execute_script(WATCH + TAG)
    feed = AlertFeed(broker.bootstrap_servers, settings, "keys")
    feed.start()
    rng = random.Random(2202)
    down, up = ("j", Keys.ARROW_DOWN), ("k", Keys.ARROW_UP)
    try:
        for i in range(ACTIONS):
            if i and i % 10 == 0:
                _bring_in(driver, "key")
            sent = feed.sent
            state = driver.execute_script(STATE)
            at = state["order"].index(state["selected"])
            step = 1 if at == 0 else -1 if at == len(state["order"]) - 1 else rng.choice((1, -1))
            previous, expected = driver.execute_script("window.__tops = null;" + NEXT, step)
            ActionChains(driver).send_keys(rng.choice(down if step == 1 else up)).perform()
            wait_until(lambda: driver.execute_script(STATE)["selected"] != previous, 5, f"move {i}: a new selection")
            after = driver.execute_script(AFTER)
            assert after["selected"] == expected, f"move {i}: selected another alert than the next in order"
            assert after["same"] and after["connected"] and after["fromConnected"] and after["tagged"], \
                f"move {i}: the row moved to or from was replaced"
            assert after["detail"] == after["reference"] and after["current"] == "true"
            _after_feed_moved(feed, sent)
    finally:
        feed.stop()
    _in_step(driver, console, feed)
    assert feed.updates >= ACTIONS // 2 and feed.new >= 5, (feed.updates, feed.new)
