"""A browser for OAuthTests: follows the OAuth redirect chain by hand between the host and
an oidc-provider-mock, keeping cookies per browser (httpx, installed with the mock).

    browser.py HOST_URL SCENARIO PROVIDER SUB

prints one JSON object with what each step saw; the Swift test asserts on it.
"""
import json
import sys
from urllib.parse import urlsplit, parse_qs

import httpx

host, scenario, provider, sub = sys.argv[1:5]


def browser():
    return httpx.Client(follow_redirects=False, timeout=30)


def start(b, redirect=True, callback="/done", error_callback="/failed"):
    params = {"callback": callback, "error_callback": error_callback}
    if redirect:
        params["redirect"] = "1"
    return b.get(f"{host}/api/auth/login/{provider}", params=params)


def authorize(b, authorize_url, who):
    """The provider's consent page: the mock accepts a form POST naming the subject."""
    r = b.post(authorize_url, data={"sub": who})
    assert r.status_code in (302, 303), f"authorize answered {r.status_code}: {r.text[:300]}"
    return r.headers["location"]


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def session(b, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = b.get(f"{host}/api/auth/session", headers=headers)
    return {"status": r.status_code, "body": r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text}


def browser_flow(b, who):
    login = start(b)
    out = {"login_status": login.status_code, "authorize_url": login.headers.get("location", "")}
    callback = authorize(b, out["authorize_url"], who)
    out["callback_url"] = callback
    done = b.get(callback)
    out.update(final_status=done.status_code, location=done.headers.get("location", ""),
               set_cookie=done.headers.get_list("set-cookie"))
    out["session"] = session(b)
    return out


def json_flow(b, who, headers=None):
    login = start(b, redirect=False).json()
    callback = authorize(b, login["redirect"], who)
    r = b.post(f"{host}/api/auth/callback/{provider}", json={"state": login["state"], "code": query(callback)["code"]},
               headers=headers or {})
    return {"status": r.status_code, "body": r.json(), "login": login, "set_cookie": r.headers.get_list("set-cookie")}


result = {}
if scenario == "browser":
    result = browser_flow(browser(), sub)
elif scenario == "json":
    result = json_flow(browser(), sub)
elif scenario == "json-page":
    # The JSON flow from a page of the host itself (it sends an Origin): a session cookie too.
    result = json_flow(browser(), sub, headers={"Origin": host})
elif scenario == "refresh":
    b = browser()
    signed = json_flow(b, sub)
    token = signed["body"].get("token")
    r = b.post(f"{host}/api/auth/oauth/refresh/{provider}", headers={"Authorization": f"Bearer {token}"})
    result = {"signed_in": signed, "status": r.status_code, "body": r.json()}
elif scenario == "replay":
    b = browser()
    first = browser_flow(b, sub)
    again = b.get(first["callback_url"])
    result = {"first": first, "status": again.status_code, "body": again.json()}
elif scenario == "other-browser":
    a, intruder = browser(), browser()
    login = start(a)
    callback = authorize(a, login.headers["location"], sub)
    r = intruder.get(callback)
    after = a.get(callback)  # the state is used up by the intruder's attempt
    result = {"status": r.status_code, "body": r.json(), "owner_status": after.status_code}
elif scenario == "swap-verifier":
    # Browser B finishes its own flow with the code the provider issued for A's challenge:
    # the host sends B's verifier, which does not match, and the provider refuses.
    a, b = browser(), browser()
    login_a = start(a)
    login_b = start(b)
    code_a = query(authorize(a, login_a.headers["location"], sub))["code"]
    state_b = query(login_b.headers["location"])["state"]
    r = b.get(f"{host}/api/auth/callback/{provider}", params={"code": code_a, "state": state_b})
    result = {"status": r.status_code, "location": r.headers.get("location", "")}
elif scenario == "denied":
    b = browser()
    login = start(b)
    state = query(login.headers["location"])["state"]
    r = b.get(f"{host}/api/auth/callback/{provider}", params={"error": "access_denied", "state": state})
    result = {"status": r.status_code, "location": r.headers.get("location", "")}
elif scenario == "provider-dies":
    import os, signal
    b = browser()
    login = start(b)
    callback = authorize(b, login.headers["location"], sub)
    os.kill(int(sys.argv[5]), signal.SIGKILL)
    r = b.get(callback)
    result = {"status": r.status_code, "location": r.headers.get("location", "")}
elif scenario == "start":
    b = browser()
    r = start(b, callback=sys.argv[5] if len(sys.argv) > 5 else "/done")
    result = {"status": r.status_code, "body": r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text,
              "location": r.headers.get("location", ""), "set_cookie": r.headers.get_list("set-cookie")}
else:
    raise SystemExit(f"unknown scenario {scenario}")
print(json.dumps(result))
