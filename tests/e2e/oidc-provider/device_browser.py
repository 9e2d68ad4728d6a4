#!/usr/bin/env python3
"""The person's side of a device-code sign-in, scripted: open the verification URI shown
at the login, type the user code, sign in on the dev login form as LOGIN and consent (or,
with `deny`, press Abort on the confirmation page). Stdlib only; for the zt e2e tests.
Usage: python3 device_browser.py VERIFICATION_URI USER_CODE LOGIN [deny]"""
import http.cookiejar, re, sys, urllib.parse, urllib.request

URI, CODE, LOGIN = sys.argv[1], sys.argv[2], sys.argv[3]
DENY = len(sys.argv) > 4 and sys.argv[4] == "deny"
br = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

def send(url, data=None):
    try:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with br.open(url, body) as r:
            return r.status, r.read().decode(), r.geturl()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), url

def hidden(html):
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))

status, html, url = send(URI)
for step in range(10):
    m = re.search(r'<form[^>]*action="([^"]+)"', html)
    if not m:
        break
    data = hidden(html)
    if 'name="user_code"' in html and "user_code" not in data:
        data["user_code"] = CODE                       # the code the login showed
    if 'name="login"' in html:
        data.update(login=LOGIN, password="x")
    if 'name="abort"' in html:
        if DENY:
            data["abort"] = "yes"
        else:
            data.setdefault("confirm", "yes")
    status, html, url = send(urllib.parse.urljoin(url, m.group(1)), data)
title = re.search(r"<title>([^<]*)", html)
print(status, title.group(1) if title else "", re.sub(r"<[^>]+>", " ", html)[:300].split())
ok = "Sign-in Success" in html or "success" in html.lower()
sys.exit(0 if ok or DENY else 1)
