"""An uploaded script in headless Chromium (FileTypesBrowserTests).

usage: browser.py BASE_URL SIGNED_JS_PATH

The studio page (`script-src 'self'`, the host's own origin) adds a <script> whose src is a
signed link to an uploaded application/javascript file: Chromium sends Sec-Fetch-Dest:
script, the host refuses it, the script fails to load and does not run. The same link read
with fetch() (Sec-Fetch-Dest: empty) still returns the file with its stored type.
"""
import os
import sys
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser"))
from support import browser, step  # noqa: E402

BASE, JS = sys.argv[1].rstrip("/"), sys.argv[2]

LOAD_SCRIPT = """
const done = arguments[arguments.length - 1];
const s = document.createElement('script');
s.src = arguments[0];
s.onload = () => done('loaded');
s.onerror = () => done('refused');
document.head.appendChild(s);
"""

FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async r => done([r.status, r.headers.get('content-type'), await r.text()]), e => done(String(e)));
"""


def main():
    d = browser()
    d.set_script_timeout(60)
    try:
        d.get(BASE + "/studio")
        title = d.title
        outcome = d.execute_async_script(LOAD_SCRIPT, BASE + JS)
        assert outcome == "refused", f"the uploaded script loaded: {outcome}"
        assert d.title == title and "uploaded-js-ran" not in d.title, f"the uploaded script ran: {d.title}"
        step("an uploaded script is refused as a <script> on the host's origin and does not run")

        status, ctype, text = d.execute_async_script(FETCH, BASE + JS)
        assert status == 200 and ctype == "application/javascript" and "uploaded-js-ran" in text, (status, ctype, text)
        step("fetch() of the same link gets the file with its stored type")
        print("files browser test passed", flush=True)
    except Exception:
        traceback.print_exc()
        print("page:", d.current_url, d.title, file=sys.stderr)
        sys.exit(1)
    finally:
        d.quit()


main()
