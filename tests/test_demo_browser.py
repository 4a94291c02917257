"""experiments/demo.py in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium): the page loads, a photo and a sample run through every task, a switched-off task
does not run, and bad uploads come back as messages on the page."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT
from piggyjax.tasks.classes import VOC_CLASSES

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 90  # seconds: the first run of a task compiles it


@pytest.fixture(scope="module")
def server(serving_bank):
  bank, _ = serving_bank
  proc = subprocess.Popen([sys.executable, "experiments/demo.py", f"--base_ckpt={bank}",
                           "--port=0", "--host=127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    deadline, url = time.monotonic() + 120, None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
      line = proc.stdout.readline()  # the server prints its address, then nothing more
      if line.startswith("serving"):
        url = line.split()[-1]
    if url is None:
      pytest.fail(f"demo.py did not start (exit status {proc.poll()})")
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def browser():
  missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
  if missing:
    pytest.fail(f"{', '.join(missing)} missing: install Debian's browser for this test with "
                "`apt-get install -y chromium chromium-driver` (.ci/run does)")
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1000"):
    opts.add_argument(arg)
  driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
  driver.set_page_load_timeout(WAIT)
  try:
    yield driver
  finally:
    driver.quit()


def submit(driver, url, photo=None, sample=None, off=()):
  from selenium.webdriver.common.by import By
  from selenium.common.exceptions import WebDriverException
  from selenium.webdriver.support.ui import Select, WebDriverWait
  driver.get(url)
  if photo is not None:
    driver.find_element(By.ID, "photo").send_keys(str(photo))
  if sample is not None:
    Select(driver.find_element(By.ID, "sample")).select_by_visible_text(sample)
  for task in off:
    driver.find_element(By.ID, f"toggle-{task}").click()
  driver.execute_script("document.body.dataset.old = 'yes'")  # gone once the answer loads
  driver.find_element(By.ID, "run").click()
  # Mid-navigation a script may fail ("node does not belong to the document"): ask again.
  WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
      lambda d: d.execute_script("return document.readyState == 'complete' && "
                                 "document.body && !document.body.dataset.old"))
  return driver


def outputs(driver) -> dict:
  """{task: (image shown, text)} of the result cards on the page."""
  from selenium.webdriver.common.by import By
  out = {}
  for card in driver.find_elements(By.CSS_SELECTOR, ".result[data-task]"):
    imgs = card.find_elements(By.TAG_NAME, "img")
    shown = bool(imgs) and driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", imgs[0])
    out[card.get_attribute("data-task")] = (shown, card.text)
  return out


def test_photo_and_sample_through_every_task(server, browser, serving_bank, shared_data, tmp_path):
  from selenium.webdriver.common.by import By
  tasks = ["seg_coco", "seg_voc", "colorize_coco"]
  browser.get(server)
  assert [e.get_attribute("value") for e in
          browser.find_elements(By.CSS_SELECTOR, "input[name=task]")] == tasks
  photo = sorted((shared_data / "msrc").rglob("*.jpg"))[0]
  got = outputs(submit(browser, server, photo=photo))
  assert list(got) == tasks and all(shown for shown, _ in got.values()), got
  assert all(" ms" in text for _, text in got.values())
  legend = [e.text for e in browser.find_elements(
      By.CSS_SELECTOR, ".result[data-task=seg_voc] .legend li")]
  assert legend and set(legend) <= set(VOC_CLASSES), legend  # classes by name, not by number
  browser.save_screenshot(str(tmp_path / "page.png"))
  got = outputs(submit(browser, server, sample="coffee", off=["seg_coco"]))
  assert list(got) == ["seg_voc", "colorize_coco"] and all(s for s, _ in got.values())


def bad_files(tmp_path, photo):
  text = tmp_path / "notes.jpg"
  text.write_text("this is not a picture")
  huge = tmp_path / "huge.png"  # 50 megapixels, a small file: refused before decoding
  Image.new("1", (8000, 6250)).save(huge)
  rgb = Image.open(photo).convert("RGB").resize((64, 48))
  cmyk = tmp_path / "print.jpg"
  rgb.convert("CMYK").save(cmyk)
  gif = tmp_path / "moving.gif"
  rgb.save(gif, save_all=True, append_images=[rgb.rotate(90)], duration=100, loop=0)
  return [(text, "not an image the page can read", False),
          (huge, "8000x6250 (50.0 megapixels), over this page's 40-megapixel limit", False),
          (cmyk, "a CMYK image", True),
          (gif, "an animated image of 2 frames: the first frame is used", True)]


def test_bad_uploads_get_a_message(server, browser, shared_data, tmp_path):
  from selenium.webdriver.common.by import By
  photo = sorted((shared_data / "msrc").rglob("*.jpg"))[0]
  for path, message, runs in bad_files(tmp_path, photo):
    driver = submit(browser, server, photo=path)
    shown = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".error, .note"))
    assert message in shown, (path.name, shown)
    assert bool(outputs(driver)) == runs, path.name
  # After all of them the server still answers.
  assert outputs(submit(browser, server, sample="rocket"))
