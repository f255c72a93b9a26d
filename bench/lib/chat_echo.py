"""Chat message echo latency between two headless Chromium browsers (bench/chat-echo.sh).

usage: chat_echo.py BASE_URL N

Alice and Bob sign up with passwords on the example chat (examples/chat) and both open
#bench. Alice sends N messages one after another, each through the page's own composer;
Bob's page stamps each message's arrival in its list with a MutationObserver. Latency is
Bob's arrival time minus the moment Alice's page submitted the message (both browsers read
one machine's clock through Date.now()). Prints one JSON line.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "browser"))
from support import browser, click, tid, visible, wait  # noqa: E402

BASE, N = sys.argv[1].rstrip("/"), int(sys.argv[2])

SEND = """
const [text] = arguments;
const form = document.querySelector('[data-testid="composer"]');
form.querySelector('[name="body"]').value = text;
const t = performance.timeOrigin + performance.now();
form.requestSubmit();
return t;
"""
WATCH = """
window.__arrivals = {};
new MutationObserver(() => {
  const t = performance.timeOrigin + performance.now();
  for (const li of document.querySelectorAll('[data-testid="message"] .body')) {
    const m = li.textContent.match(/^echo (\\d+)$/);
    if (m && !(m[1] in window.__arrivals)) window.__arrivals[m[1]] = t;
  }
}).observe(document.querySelector('[data-testid="messages"]'), {childList: true, subtree: true});
"""


def sign_up(d, name):
    d.get(BASE + "/")
    wait(d, "the sign-in form", lambda: visible(d, "signin"))
    tid(d, "pw-email").send_keys(f"{name}@bench.example")
    tid(d, "pw-password").send_keys("correct horse battery")
    tid(d, "pw-name").send_keys(name)
    click(d, "pw-register")
    wait(d, f"{name}'s app", lambda: visible(d, "app"))


def main():
    alice, bob = browser(), browser()
    try:
        sign_up(alice, "alice")
        sign_up(bob, "bob")
        tid(alice, "new-channel-name").send_keys("bench")
        click(alice, "new-channel-create")
        wait(alice, "#bench", lambda: tid(alice, "channel-title").text == "#bench" and visible(alice, "composer"))
        bob.get(BASE + "/c/bench")
        wait(bob, "#bench", lambda: tid(bob, "channel-title").text == "#bench")
        wait(bob, "the join button", lambda: visible(bob, "join"))
        click(bob, "join")
        wait(bob, "Bob's composer", lambda: visible(bob, "composer"))
        bob.execute_script(WATCH)
        sent = {}
        for i in range(N):
            sent[str(i)] = alice.execute_script(SEND, f"echo {i}")
            wait(bob, f"echo {i}", lambda: bob.execute_script(f"return '{i}' in window.__arrivals"))
        arrivals = bob.execute_script("return window.__arrivals")
        lat = sorted(arrivals[k] - sent[k] for k in sent)
        pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)
        print(json.dumps({"messages": len(lat), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
                          "max_ms": round(lat[-1], 2), "mean_ms": round(sum(lat) / len(lat), 2)}))
    except Exception:
        print(f"alice's page says: {tid(alice, 'app-error').text!r}; bob's: {tid(bob, 'app-error').text!r}", file=sys.stderr)
        raise
    finally:
        alice.quit()
        bob.quit()


if __name__ == "__main__":
    main()
