"""Headless chromium for the console tests, and the docs' screenshots in which every face is a
generated placeholder and no data-set name shows."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest

from .helpers import placeholder_jpeg

DOCS = Path(__file__).resolve().parents[2] / "docs"


def chromium(*extra_flags: str):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1280,720",
                 "--disable-dev-shm-usage", *extra_flags):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    # Exactly the van's 1280x720 viewport (the window size would include the browser's frame).
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    return browser


def sign_in(driver, url: str, username: str, password: str) -> None:
    """Sign in through the users-file form; returns once the console's live stream is connected."""
    from selenium.webdriver.common.by import By

    from tests.kafka_helpers import wait_until

    driver.get(url + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    wait_until(lambda: any(e.text == "live" for e in driver.find_elements(By.ID, "live")), 20, "the console, live")


def screenshots_dir() -> Path:
    """docs/ when LFR_UPDATE_SCREENSHOTS=1 (refreshing the docs' images), else var/ (git-ignored)."""
    import os

    folder = DOCS if os.environ.get("LFR_UPDATE_SCREENSHOTS") == "1" else DOCS.parent / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Each alert gets one placeholder reference, numbered by its place in the queue, and the detail
# pane shows the number of the alert selected in the queue: the same alert reads the same in
# both places. (Numbering every element in document order once made the queue read 1001 and the
# detail of that very alert 1002 in the docs' screenshot.)
HIDE_FACES = """
document.getElementById('probe').src = arguments[0];
document.getElementById('reference').src = arguments[1];
const rows = [...document.querySelectorAll('#queue li')];
const name = (id) => 'DEMO-CASE-' + (1001 + rows.findIndex((li) => li.dataset.alertId === id));
rows.forEach((li) => li.querySelector('.ref').textContent = name(li.dataset.alertId));
const chosen = document.querySelector('#queue li.selected');
document.getElementById('f-reference').textContent = chosen ? name(chosen.dataset.alertId) : 'DEMO-CASE-0000';
"""
FACES_HIDDEN = """
const imgs = ['probe', 'reference'].map((id) => document.getElementById(id));
const texts = [...document.querySelectorAll('.ref, #f-reference')].map((e) => e.textContent);
const chosen = document.querySelector('#queue li.selected .ref');
return imgs.every((i) => i.src.startsWith('data:') && i.complete && i.naturalWidth > 0) && texts.every((t) => t.startsWith('DEMO-CASE-'))
  && chosen !== null && chosen.textContent === document.getElementById('f-reference').textContent;
"""


def placeholder_screenshot(driver, path: Path) -> None:
    """A screenshot in which every face is a generated placeholder and no data-set name shows.

    A live update may swap an image back at any moment, so the page is checked before and after
    the capture, and the file is kept only when both checks pass: a data-set face never reaches it.
    """
    for _ in range(20):
        driver.execute_script(HIDE_FACES, data_url(placeholder_jpeg(7)), data_url(placeholder_jpeg(8, 140)))
        time.sleep(0.3)
        if not driver.execute_script(FACES_HIDDEN):
            continue
        candidate = path.with_name(path.stem + ".candidate.png")
        driver.save_screenshot(str(candidate))
        if driver.execute_script(FACES_HIDDEN):
            candidate.replace(path)
            return
        candidate.unlink()
    raise AssertionError("no screenshot with placeholders only could be taken")


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
