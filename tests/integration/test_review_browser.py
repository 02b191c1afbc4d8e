"""The review app in a real browser (Debian's chromium via Selenium), on the real stack.

Two labellers, each in a browser of their own: ann labels her first item with the
``1`` key, then searches the taxonomy with ``/`` and picks a deep category for her
next one; both labels arrive on ``products.labels`` with her name; bob is never
handed ann's items and sees them leave his live queue. Screenshots of the review
page and the dashboard are saved as artefacts (``tmp_path``; and under
``docs/images/`` when ``CATSTREAM_DOCS_IMAGES=1``).

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``make tools`` installs
them); without them the test fails, it never skips.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from catstream.settings import Settings
from schemas.events import Label
from streams.review_cli import read_topic
from streams.topics import create_topics
from tests.integration.review_app_fixtures import (
    CANDIDATES,
    ROOT,
    png_bytes,
    publish_items,
    review_items,
    serve_review_app,
    wait_for_depth,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEEP = "Toys & Games > Toys > Pretend Play > Toy Kitchens & Play Food > Toy Kitchens"
WAIT_S = 60


def browser() -> WebDriver:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: run `make tools` (apt-get install chromium "
            "chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def image_server() -> Iterator[str]:
    """Product images on a local HTTP server (the app may fetch private addresses here)."""
    colours = [(220, 60, 60), (60, 160, 90), (60, 90, 200), (200, 180, 40)]

    class Images(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            number = self.path.strip("/").removesuffix(".png")
            body = png_bytes(colours[int(number) % 4]) if number.isdigit() else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


# Both read the page in one script: the queue and the card are re-rendered while the
# test polls, and an element found by one WebDriver call can be gone by the next
# (CI failed on a stale element reference between find_elements and get_attribute).
def card_product(driver: WebDriver) -> str:
    return str(
        driver.execute_script(
            "const c = document.getElementById('card');"
            "return c === null ? '' : (c.getAttribute('data-product-id') || '');"
        )
    )


def queue_ids(driver: WebDriver) -> list[str]:
    ids = driver.execute_script(
        "return Array.from(document.querySelectorAll('#queue li[data-product-id]'),"
        " r => r.getAttribute('data-product-id'));"
    )
    return [str(i) for i in ids]


def result_texts(driver: WebDriver) -> list[str]:
    texts = driver.execute_script(
        "return Array.from(document.querySelectorAll('#results button'), b => b.innerText);"
    )
    return [str(t) for t in texts]


def start_labelling(driver: WebDriver, url: str, name: str) -> str:
    driver.get(f"{url}/review")
    driver.find_element(By.ID, "labeller").send_keys(name + Keys.ENTER)
    WebDriverWait(driver, WAIT_S).until(lambda d: card_product(d) != "")
    return card_product(driver)


def save(driver: WebDriver, path: Path, name: str) -> None:
    driver.save_screenshot(str(path / name))
    if os.environ.get("CATSTREAM_DOCS_IMAGES") == "1":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path / name, ROOT / "docs" / "images" / name)


def test_two_labellers_label_with_the_keyboard_in_a_real_browser(
    topic_settings: Settings, image_server: str, tmp_path: Path
) -> None:
    create_topics(topic_settings)
    publish_items(topic_settings, review_items(topic_settings, image_server, count=3))
    extra = {"CATSTREAM_IMAGE_ALLOW_PRIVATE": "true"}
    with serve_review_app(topic_settings, tmp_path, **extra) as app:
        wait_for_depth(app.url, 3)
        ann, bob = browser(), browser()
        try:
            first = start_labelling(ann, app.url, "ann")
            assert first == "toy-0"  # oldest first
            # the image came through the proxy
            WebDriverWait(ann, WAIT_S).until(
                lambda d: d.execute_script(
                    "const i = document.querySelector('.images img');"
                    "return i !== null && i.complete && i.naturalWidth > 0;"
                )
            )
            save(ann, tmp_path, "review-page.png")
            bobs = start_labelling(bob, app.url, "bob")
            assert bobs not in {first}, "bob was handed the item ann holds"

            ann.find_element(By.TAG_NAME, "body").send_keys("1")
            WebDriverWait(ann, WAIT_S).until(lambda d: card_product(d) not in ("", first))
            second = card_product(ann)
            assert second not in {first, bobs}
            # bob's live queue (polled, no reload) no longer lists the labelled product
            WebDriverWait(bob, WAIT_S).until(lambda d: first not in queue_ids(d))
            assert card_product(bob) == bobs

            body = ann.find_element(By.TAG_NAME, "body")
            body.send_keys("/")
            search = ann.switch_to.active_element
            assert search.get_attribute("id") == "search"
            search.send_keys("toy kitchens")
            WebDriverWait(ann, WAIT_S).until(lambda d: DEEP in result_texts(d))
            position = result_texts(ann).index(DEEP)
            for _ in range(position):
                search.send_keys(Keys.ARROW_DOWN)
            search.send_keys(Keys.ENTER)
            WebDriverWait(ann, WAIT_S).until(lambda d: card_product(d) != second)
            WebDriverWait(bob, WAIT_S).until(lambda d: second not in queue_ids(d))
            save(bob, tmp_path, "review-queue-second-labeller.png")

            ann.get(f"{app.url}/review/dashboard")
            save(ann, tmp_path, "review-dashboard.png")
            assert ann.find_element(By.ID, "last-hour").text == "2"
        finally:
            ann.quit()
            bob.quit()

    labels = [Label.model_validate_json(v) for v in read_topic(topic_settings, "labels")]
    got = {label.product_id: label for label in labels}
    assert set(got) == {first, second}
    assert got[first].category == CANDIDATES[0]
    assert got[second].category == DEEP
    assert {label.labeller for label in labels} == {"ann"}
    assert got[first].random_sample is True  # toy-0 was a random sample: holdout
    assert all(label.labelled_at > 0 and label.title for label in labels)
