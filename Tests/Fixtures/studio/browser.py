"""Drives the studio (/studio) in headless Chromium (StudioBrowserTests).

usage: browser.py BASE_URL ADMIN_TOKEN

A wrong token is refused at the sign-in form; the admin token opens the studio; a Note is
inserted through the entity editor and listed; the live tail shows a change made through
the API; the metrics view draws its charts; each view's heading takes the focus; the
browser logs no errors (a CSP violation would be one). Prints one `ok:` line per step and
exits non-zero with the page's state on the first failure.
"""
import json
import os
import sys
import traceback
import urllib.request

from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser"))
from support import browser, click, step, tid, wait  # noqa: E402

BASE, TOKEN = sys.argv[1].rstrip("/"), sys.argv[2]


def api(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def count(d, css):
    return len(d.find_elements(By.CSS_SELECTOR, css))


def focused_heading(d):
    return d.execute_script("const a = document.activeElement; return a && a.tagName === 'H2' ? a.textContent : null;")


def main():
    d = browser()
    try:
        d.get(BASE + "/studio")
        wait(d, "the sign-in form", lambda: tid(d, "view-signin").is_displayed())
        tid(d, "signin-token").send_keys("not-the-token")
        click(d, "signin-submit")
        wait(d, "the refusal", lambda: "not the admin token" in tid(d, "view-signin").text)
        d.get_log("browser")  # the refused token's 401 is the one expected error: drop it
        step("a wrong token is refused")

        field = tid(d, "signin-token")
        field.clear()
        field.send_keys(TOKEN)
        click(d, "signin-submit")
        wait(d, "the entity index", lambda: "Note" in tid(d, "entity-index").text)
        wait(d, "the heading focused", lambda: focused_heading(d) is not None)
        step("the admin token opens the studio on the entities, heading focused")

        d.get(BASE + "/studio/entities/Note/new")
        wait(d, "the row form", lambda: tid(d, "row-form").is_displayed())
        d.find_element(By.CSS_SELECTOR, '[data-testid="row-form"] [name="text"]').send_keys("from the studio")
        d.find_element(By.CSS_SELECTOR, '[data-testid="row-form"] button[type="submit"]').click()
        # An insert opens the new row's page.
        wait(d, "the new row's page", lambda: "/studio/entities/Note/" in d.current_url and not d.current_url.endswith("/new")
             and tid(d, "row-form").get_attribute("aria-label").startswith("Edit Note"))
        d.get(BASE + "/studio/entities/Note")
        wait(d, "the new row listed", lambda: "from the studio" in tid(d, "entity-rows").text)
        rows = api("GET", "/api/entities/Note")
        rows = rows.get("data", rows) if isinstance(rows, dict) else rows
        assert any(r.get("text") == "from the studio" for r in rows), f"the API does not have the row: {rows}"
        step("a row inserted with the editor is in the list and the API")

        d.get(BASE + "/studio/tail")
        wait(d, "the tail live", lambda: "Live" in tid(d, "tail-state").text)
        before = count(d, '[data-testid="tail-log"] li[data-entity="Note"]')
        api("POST", "/api/entities/Note", {"text": "seen in the tail"})
        wait(d, "the change in the tail", lambda: count(d, '[data-testid="tail-log"] li[data-entity="Note"]') > before)
        step("the live tail shows a change made through the API")

        d.get(BASE + "/studio/metrics")
        wait(d, "the charts", lambda: count(d, '[data-testid="metrics-charts"] figure[data-chart] svg') >= 4)
        step("the metrics view draws its charts")
        if os.environ.get("PYLON_SCREENSHOT_DIR"):
            d.get(BASE + "/studio/entities/Note")
            wait(d, "the rows for the screenshot", lambda: "from the studio" in tid(d, "entity-rows").text)
            d.save_screenshot(os.path.join(os.environ["PYLON_SCREENSHOT_DIR"], "studio.png"))

        for path, view in (("jobs", "view-jobs"), ("realtime", "view-realtime"), ("users", "view-users"), ("functions", "view-functions")):
            d.find_element(By.CSS_SELECTOR, f'[data-testid="nav"] a[data-nav="{path}"]').click()
            wait(d, f"the {path} view", lambda: tid(d, view).is_displayed() and focused_heading(d) is not None)
        step("navigation by the menu opens each view with its heading focused")

        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, f"the browser logged errors: {errors}"
        step("no errors in the browser's log (no CSP violations)")
        print("studio browser test passed", flush=True)
    except Exception:
        traceback.print_exc()
        try:
            print(f"--- at {d.current_url}:\n{d.find_element(By.TAG_NAME, 'body').get_attribute('innerHTML')[:4000]}", file=sys.stderr)
            for entry in d.get_log("browser")[-20:]:
                print(f"    console: {entry}", file=sys.stderr)
        except Exception as e:
            print(f"--- no page state ({e})", file=sys.stderr)
        sys.exit(1)
    finally:
        d.quit()


if __name__ == "__main__":
    main()
