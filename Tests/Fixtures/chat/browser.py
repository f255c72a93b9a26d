"""Drives examples/chat in two headless Chromium browsers (ChatExampleTests).

usage: browser.py BASE_URL

Alice registers with a password, creates #general and #random; Bob signs in with an email
code (the --dev host answers it), opens /c/general directly (the host's single-page
fallback), joins, and the two see each other in the room; Bob's typing shows on Alice's
page; messages arrive live; Alice goes offline while Bob sends three, and after she is back
her page shows exactly those three, once each; an image arrives; a message to a channel Alice is not looking at
raises its unread badge (kept by the recountUnread job), and opening it clears the badge;
a reload shows the messages from the IndexedDB replica. Prints one `ok:` line per step and
exits non-zero with the page's state on the first failure.
"""
import os
import struct
import sys
import tempfile
import time
import traceback
import zlib

from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser"))
from support import browser, click, step, texts, tid, visible, wait  # noqa: E402

BASE = sys.argv[1].rstrip("/")


def png(path):
    """A 2x2 red PNG."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(body)


# Chromium's offline emulation fails new requests but leaves open WebSockets alone, so a
# page is also given a WebSocket that can be cut: its sockets are recorded, and while
# `__offline` is set a new one dials a closed port (a connection that fails, as offline).
SOCKET_SHIM = """
(() => {
  const Real = window.WebSocket;
  window.__sockets = [];
  window.__offline = false;
  function WebSocket(url, protocols) {
    const ws = new Real(window.__offline ? 'ws://127.0.0.1:9/' : url, protocols);
    window.__sockets.push(ws);
    return ws;
  }
  WebSocket.prototype = Real.prototype;
  Object.assign(WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  window.WebSocket = WebSocket;
})();
"""


def cuttable(d):
    """Installs the shim in every page `d` loads from now on."""
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SOCKET_SHIM})


def offline(d, on):
    """Takes the page off the network (requests fail, its sockets close and cannot reopen) or back on."""
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.emulateNetworkConditions",
                      {"offline": on, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    d.execute_script("window.__offline = arguments[0]; if (arguments[0]) for (const s of window.__sockets) s.close();", on)


def main():
    alice, bob = browser(), browser()
    try:
        cuttable(alice)
        # Alice: password account.
        alice.get(BASE + "/")
        wait(alice, "the sign-in form", lambda: visible(alice, "signin"))
        tid(alice, "pw-email").send_keys("alice@example.com")
        tid(alice, "pw-password").send_keys("correct horse battery")
        tid(alice, "pw-name").send_keys("Alice")
        click(alice, "pw-register")
        wait(alice, "Alice's app", lambda: visible(alice, "app") and tid(alice, "me").text == "Alice")
        step("alice registered with a password")

        for name in ("general", "random"):
            field = tid(alice, "new-channel-name")
            field.clear()
            field.send_keys(name)
            click(alice, "new-channel-create")
            wait(alice, f"#{name} open", lambda: tid(alice, "channel-title").text == f"#{name}")
        alice.get(BASE + "/c/general")
        wait(alice, "#general after a reload", lambda: tid(alice, "channel-title").text == "#general" and visible(alice, "composer"))
        step("alice created #general and #random; /c/general loads from the single-page fallback")

        # Bob: email code (the --dev host answers it and the page fills it in).
        bob.get(BASE + "/c/general")
        wait(bob, "the sign-in form", lambda: visible(bob, "signin"))
        tid(bob, "code-email").send_keys("bob@example.com")
        click(bob, "code-send")
        wait(bob, "the code", lambda: len(tid(bob, "code-code").get_attribute("value") or "") == 6)
        click(bob, "code-verify")
        wait(bob, "Bob's app on #general", lambda: visible(bob, "app") and tid(bob, "channel-title").text == "#general")
        wait(bob, "the join button", lambda: visible(bob, "join"))
        click(bob, "join")
        wait(bob, "Bob's composer", lambda: visible(bob, "composer"))
        step("bob signed in with an email code and joined #general")

        wait(alice, "Bob in Alice's room", lambda: "bob" in tid(alice, "here").text)
        wait(bob, "Alice in Bob's room", lambda: "Alice" in tid(bob, "here").text)
        step("presence: each sees the other in #general")

        tid(bob, "body").send_keys("hello")
        wait(alice, "Bob typing", lambda: "bob is typing" in tid(alice, "typing").text)
        step("typing shows on the other page")
        click(bob, "send")
        wait(alice, "Bob's message", lambda: any("hello" in t for t in texts(alice, "message")))
        wait(alice, "typing cleared", lambda: tid(alice, "typing").text == "")
        step("a message arrives live")

        # Alice goes offline (the browser's network emulation), Bob sends three more; back
        # online, Alice's page shows exactly those three, once each.
        offline(alice, True)
        for n in (1, 2, 3):
            tid(bob, "body").send_keys(f"while away {n}")
            click(bob, "send")
            wait(bob, f"'while away {n}' sent", lambda: any(f"while away {n}" in t for t in texts(bob, "message")))
        time.sleep(1)
        assert not any("while away" in t for t in texts(alice, "message")), "an offline page received messages"
        offline(alice, False)
        wait(alice, "the three messages after reconnecting", lambda: sum(1 for t in texts(alice, "message") if "while away" in t) == 3)
        time.sleep(1)
        away = [t for t in texts(alice, "message") if "while away" in t]
        assert [a.split("while away ")[1] for a in away] == ["1", "2", "3"], f"not exactly the three, once each: {away}"
        step("offline, then back: exactly the three missed messages, once each")

        image = os.path.join(tempfile.mkdtemp(prefix="pylon-chat-"), "red.png")
        png(image)
        tid(bob, "image").send_keys(image)
        tid(bob, "body").send_keys("a picture")
        click(bob, "send")
        wait(alice, "Bob's image", lambda: any(
            e.get_attribute("naturalWidth") == "2" for e in alice.find_elements(By.CSS_SELECTOR, '[data-testid="message-image"]')))
        step("an image attachment arrives and loads")

        # Unread: Alice looks at #random while Bob writes in #general (once she has read it all).
        wait(alice, "#general read", lambda: tid(alice, "channel-general").get_attribute("data-unread") == "0")
        click(alice, "channel-random")
        wait(alice, "#random open", lambda: tid(alice, "channel-title").text == "#random")
        for text in ("one", "two"):
            tid(bob, "body").send_keys(text)
            click(bob, "send")
            wait(bob, f"'{text}' sent", lambda: any(text in t for t in texts(bob, "message")))
        wait(alice, "the unread badge", lambda: texts(alice, "unread-general") == ["2"])
        step("unread count raised by the job")
        click(alice, "channel-general")
        wait(alice, "the badge cleared", lambda: texts(alice, "unread-general") == [] and any("two" in t for t in texts(alice, "message")))
        alice.refresh()
        wait(alice, "messages after a reload", lambda: tid(alice, "channel-title").text == "#general"
             and sum(1 for t in texts(alice, "message") if "hello" in t or "two" in t) == 2)
        time.sleep(0.5)
        assert texts(alice, "unread-general") == [], "the unread badge came back after a reload"
        step("opening the channel clears the badge; a reload shows the replica")
        shots = os.environ.get("PYLON_SCREENSHOT_DIR")
        if shots:
            alice.save_screenshot(os.path.join(shots, "chat.png"))
        print("chat browser test passed", flush=True)
    except Exception:
        traceback.print_exc()
        for who, d in (("alice", alice), ("bob", bob)):
            try:
                print(f"--- {who} at {d.current_url}:\n{d.find_element(By.TAG_NAME, 'body').get_attribute('innerHTML')[:4000]}", file=sys.stderr)
                for entry in d.get_log("browser")[-20:]:
                    print(f"    console: {entry}", file=sys.stderr)
            except Exception as e:
                print(f"--- {who}: no page state ({e})", file=sys.stderr)
        sys.exit(1)
    finally:
        alice.quit()
        bob.quit()


if __name__ == "__main__":
    main()
