"""Drive the web app in headless Chromium, as a person would, and screenshot.

  python tools/app_screenshot.py --url http://127.0.0.1:7860 \\
      --input docs/images/chelsea_gray_lr.png --scale 4 [--output FILE]

Opens the page, uploads the photo, sets the magnification, clicks
Colourise, waits for the result image and saves a screenshot
(``app_screenshot.png`` in the current folder unless ``--output`` says
otherwise: the tracked docs/images/app.png is overwritten only on purpose).
Uses the system's Chromium and chromedriver (Debian: ``apt-get install
chromium chromium-driver``) through selenium (``pip install -e .[app]``); no browser
is downloaded. It also reports every request the page made to a host other
than the app's, so a test can prove the page needs no network.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import urllib.parse
from typing import Optional

# Flags for a headless browser run as root that talks to nothing but the
# page: no sandbox (root), no GPU, no background updates or sync.
CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--window-size=1400,1250')
BROWSERS = ('chromium', 'chromium-browser')
DEFAULT_OUTPUT = 'app_screenshot.png'
DRIVERS = ('chromedriver',)


def find_browser() -> tuple[Optional[str], Optional[str], str]:
  """(chromium path, chromedriver path, why not) for this machine."""
  browser = next(filter(None, map(shutil.which, BROWSERS)), None)
  driver = next(filter(None, map(shutil.which, DRIVERS)), None)
  if browser is None or driver is None:
    return browser, driver, ('Chromium and chromedriver are needed on PATH '
                             '(Debian: apt-get install chromium '
                             'chromium-driver)')
  try:
    import selenium  # noqa: F401
  except ImportError:
    return browser, driver, "selenium is needed (pip install -e '.[app]')"
  return browser, driver, ''


@dataclasses.dataclass
class PageRun:
  """What the browser saw: the result image's natural (width, height), the
  summary text, how many requests the page made, and the URLs of those to
  other hosts than the app's."""
  result_size: tuple[int, int]
  summary: str
  requests: int
  foreign_requests: list[str]


def _requests(driver, app_host: str) -> tuple[int, list[str]]:
  """(number of requests in Chromium's performance log, URLs of those to
  hosts other than the app's)."""
  count, urls = 0, []
  for entry in driver.get_log('performance'):
    message = json.loads(entry['message'])['message']
    if message.get('method') != 'Network.requestWillBeSent':
      continue
    count += 1
    url = message['params']['request']['url']
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ('http', 'https', 'ws', 'wss') and (
        parts.hostname not in (app_host, 'localhost', '127.0.0.1')):
      urls.append(url)
  return count, urls


def run_page(url: str, image_path: str, screenshot_path: str, *,
             scale: Optional[float] = None, timeout: float = 300.0
             ) -> PageRun:
  """Upload ``image_path`` at ``url``, run it, wait for the result image,
  save a PNG screenshot of the window to ``screenshot_path``.

  Raises RuntimeError naming what was missing (browser, a page element, the
  result in time).
  """
  browser, driver_path, why_not = find_browser()
  if why_not:
    raise RuntimeError(why_not)
  from selenium import webdriver
  from selenium.common.exceptions import TimeoutException
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  profile = tempfile.mkdtemp(prefix='scsnet_chromium-')
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for flag in CHROMIUM_FLAGS + (f'--user-data-dir={profile}',):
    options.add_argument(flag)
  options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
  driver = webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(driver_path))
  try:
    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    upload = wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, '#image input[type=file]'))
    upload.send_keys(os.path.abspath(image_path))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#seen img'))
    if scale is not None:
      field = driver.find_element(By.CSS_SELECTOR, '#scale input')
      field.clear()
      field.send_keys(str(scale))
    driver.find_element(By.CSS_SELECTOR, '#run').click()
    natural = ('const img = document.querySelector("#result img");'
               'return img && img.complete && img.naturalWidth ? '
               '[img.naturalWidth, img.naturalHeight] : null;')
    try:
      size = wait.until(lambda d: d.execute_script(natural))
    except TimeoutException:
      raise RuntimeError(f'no result image after {timeout:.0f} s') from None
    summary = driver.find_element(By.CSS_SELECTOR, '#summary').text
    driver.execute_script('window.scrollTo(0, 0);')
    if not driver.save_screenshot(os.fspath(screenshot_path)):
      raise RuntimeError(f'{screenshot_path}: screenshot not written')
    host = urllib.parse.urlsplit(url).hostname
    return PageRun(tuple(size), summary, *_requests(driver, host))
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python tools/app_screenshot.py',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--url', default='http://127.0.0.1:7860',
                      help='the running app (default: %(default)s)')
  parser.add_argument('--input', required=True, help='photo to upload')
  parser.add_argument('--scale', type=float, default=None,
                      help='magnification to type in (default: the page\'s)')
  parser.add_argument('--output', default=DEFAULT_OUTPUT,
                      help='screenshot PNG (default: %(default)s)')
  args = parser.parse_args(argv)
  try:
    run = run_page(args.url, args.input, args.output, scale=args.scale)
  except Exception as error:  # browser missing, page not answering
    lines = str(error).strip().splitlines()
    print(f'error: {lines[0] if lines else type(error).__name__}',
          file=sys.stderr)
    return 1
  print(f'result {run.result_size[0]}x{run.result_size[1]}; {run.summary}')
  for foreign in run.foreign_requests:
    print(f'warning: the page requested {foreign}', file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
