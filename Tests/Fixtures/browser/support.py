"""Headless Chromium for the browser tests (ChatExampleTests, StudioBrowserTests), driven by
selenium: a fresh browser with its own profile, and waits that tolerate re-rendered pages."""
import os
import tempfile

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 60


def browser():
    opts = webdriver.ChromeOptions()
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if os.path.exists(path):
            opts.binary_location = path
            break
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--window-size=1200,900",
                f"--user-data-dir={tempfile.mkdtemp(prefix='pylon-chromium-')}"):
        opts.add_argument(arg)
    driver_path = next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    service = Service(driver_path) if driver_path else Service()
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(WAIT)
    return d


def tid(d, name):
    return d.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def wait(d, what, cond):
    try:
        # The page re-renders lists as rows arrive: an element found a moment ago may be gone.
        return WebDriverWait(d, WAIT, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda _: cond())
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}") from e


def click(d, name):
    """Clicks the element, found again if a re-render replaced it meanwhile."""
    def attempt():
        tid(d, name).click()
        return True
    wait(d, f"a click on {name}", attempt)


def visible(d, name):
    try:
        return tid(d, name).is_displayed()
    except Exception:
        return False


def texts(d, name):
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')]


def step(name):
    print(f"ok: {name}", flush=True)
