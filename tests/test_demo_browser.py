"""The demo page in a real browser: `deffiller demo` serves a tiny model on 127.0.0.1 and headless Chromium (Debian's
`chromium` + `chromium-driver`, which .ci/run installs) draws a stroke and generates, then uploads a mask, picks the
class, generates again, checks the gallery's images and adds them to a dataset. The screenshot is saved in the test's
folder, and copied to $DEFFILLER_DEMO_SCREENSHOT when set (README's docs/demo.png is made that way)."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.config import REPO_ROOT
from deffiller.data.layout import load_pairs
from deffiller.training.deffiller import TrainConfig, save_pipeline

CLASSES = ("inclusion", "patches", "scratches")
OUTLINE_RGB = (255, 40, 40)


def browser_paths() -> tuple[str, str]:
    """Chromium and its driver; a failure (never a skip) naming the packages when they are missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("the browser test needs headless Chromium and its driver: "
                    "apt-get install chromium chromium-driver (.ci/run does this)")
    return browser, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`deffiller demo` on a tiny model in a child process; yields (url, dataset folder)."""
    torch.manual_seed(0)
    save_pipeline(tiny_parts(tiny_profile(tmp_path)), TrainConfig(), CLASSES, tmp_path / "run" / "model")
    port, dataset = free_port(), tmp_path / "dataset"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "deffiller", "demo", "--model", str(tmp_path / "run"),
                               "--profile", "tiny", "--port", str(port), "--dataset", str(dataset), "--threads", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                pytest.fail(f"`deffiller demo` exited ({server.returncode}):\n{(tmp_path / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no page at {url} after 240 s:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(1)
        yield url, dataset
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1500"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the page's requests, to check them
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def requested_urls(browser) -> set[str]:
    messages = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return {m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"}


def fetch(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def test_draw_upload_generate_and_add_to_dataset_in_headless_chromium(served, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, dataset = served
    mask = np.zeros((200, 200), np.uint8)
    mask[40:160, 94:106] = 255
    Image.fromarray(mask).save(tmp_path / "Sc_mask.png")
    wait = WebDriverWait(browser, 180)
    sources = lambda: [img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "#gallery img")]  # noqa: E731

    def status() -> str:
        text = browser.find_element(By.ID, "status").text
        assert "Not done" not in text, text  # the page refused: fail now, not at the timeout
        return text

    browser.get(url)
    canvas = wait.until(lambda b: next(iter(b.find_elements(By.CSS_SELECTOR, "#canvas canvas")), None))
    wait.until(lambda b: canvas.is_displayed() and b.find_elements(By.CSS_SELECTOR, "#canvas button[title=Brush]"))
    ActionChains(browser).move_to_element_with_offset(canvas, -60, 0).click_and_hold().move_by_offset(60, 0) \
        .move_by_offset(60, 0).release().perform()  # a horizontal stroke of the brush
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: len(sources()) == 4 and "4 inclusion images of a mask covering" in status())
    drawn = sources()

    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(tmp_path / "Sc_mask.png"))
    wait.until(lambda b: "Mask loaded" in status())
    next(label for label in browser.find_elements(By.CSS_SELECTOR, "#class label") if label.text == "scratches").click()
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: "4 scratches images of a mask covering 3.6%" in status() and len(sources()) == 4
               and not set(sources()) & set(drawn))

    images = [fetch(src) for src in sources()]
    for image in images:
        assert image.shape == (200, 200, 3) and image.std() > 1  # at the dataset's size, not blank
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1 :])

    plain = sources()
    browser.find_element(By.CSS_SELECTOR, "#outline input[type=checkbox]").click()
    wait.until(lambda b: len(sources()) == 4 and sources() != plain)
    red = (fetch(sources()[0]) == OUTLINE_RGB).all(axis=2)
    assert red.any() and not red[mask == 0].any()  # the uploaded mask replaced the stroke on the canvas
    browser.save_screenshot(str(tmp_path / "demo.png"))
    if os.environ.get("DEFFILLER_DEMO_SCREENSHOT"):  # README's picture, as a small palette PNG
        shot = Image.open(tmp_path / "demo.png").convert("RGB")
        shot = shot.quantize(colors=128, method=Image.Quantize.FASTOCTREE)
        shot.save(os.environ["DEFFILLER_DEMO_SCREENSHOT"], optimize=True)

    browser.find_element(By.ID, "add").click()
    wait.until(lambda b: "Added" in status())
    assert "Added Sc_1, Sc_2, Sc_3, Sc_4" in status()
    pairs = load_pairs(dataset)
    assert [p.name for p in pairs] == ["Sc_1", "Sc_2", "Sc_3", "Sc_4"]
    assert np.array_equal(np.asarray(Image.open(pairs[0].mask)), mask)
    assert np.array_equal(np.asarray(Image.open(pairs[2].image).convert("RGB")), images[2])
    outside = {u for u in requested_urls(browser) if not u.startswith((url, "data:", "blob:"))}
    assert not outside, f"the page reached outside 127.0.0.1: {sorted(outside)[:5]}"
