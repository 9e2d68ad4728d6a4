#!/usr/bin/env python3
"""Drive the OAuth 2.0 device authorization grant against the local oidc-provider end to end:
agent requests a device code, a scripted "browser" (urllib + cookie jar) enters the user code,
logs in as alice on the dev login form and consents, agent polls /token and gets an ID token.
Stdlib only. Usage: python3 device_flow.py [issuer] [user] [out-file]"""
import base64, http.cookiejar, json, os, re, sys, time, urllib.parse, urllib.request

ISS = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
USER = sys.argv[2] if len(sys.argv) > 2 else "alice"
CLIENT = os.environ.get("CLIENT_ID", "zt-agent")  # zt-e2e: the audience of the ID token
def post(url, data, opener=urllib.request.build_opener()):
    try:
        with opener.open(url, urllib.parse.urlencode(data).encode()) as r: return r.status, r.read().decode(), r.geturl()
    except urllib.error.HTTPError as e: return e.code, e.read().decode(), url
def hidden(html):  # all <input type="hidden" name=.. value=..>
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))

disc = json.load(urllib.request.urlopen(ISS + "/.well-known/openid-configuration"))
# 1. agent: device authorization request
_, body, _ = post(disc["device_authorization_endpoint"], {"client_id": CLIENT, "scope": "openid profile email groups"})
da = json.loads(body); print("device auth:", {k: da.get(k) for k in ("user_code", "verification_uri", "expires_in", "interval")})
# 2-3. browser: open verification_uri_complete and submit whatever form each page shows
#      (auto-submit -> confirm device -> dev login form -> consent) until the success page.
br = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
with br.open(da["verification_uri_complete"]) as r: html, url = r.read().decode(), r.geturl()
for step in range(8):
    m = re.search(r'<form[^>]*action="([^"]+)"', html)
    if not m: break
    data = hidden(html)
    if 'name="login"' in html: data.update(login=USER, password="x")
    st, html, url = post(urllib.parse.urljoin(url, m.group(1)), data, br)
    print(f"  step {step}: {st} {url} :: {re.search(r'<title>([^<]*)', html).group(1) if '<title>' in html else ''}")
# 4. agent: poll the token endpoint
while True:
    st, body, _ = post(disc["token_endpoint"], {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                               "device_code": da["device_code"], "client_id": CLIENT})
    tok = json.loads(body)
    if tok.get("error") in ("authorization_pending", "slow_down"): time.sleep(da.get("interval") or 5); continue
    break
if "id_token" not in tok: print("FAILED", st, tok); sys.exit(1)
seg = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
h, p, _ = tok["id_token"].split(".")
print("id_token header:", seg(h)); print("id_token claims:", seg(p))
print("token_type:", tok.get("token_type"), "has refresh_token:", "refresh_token" in tok)
open(sys.argv[3] if len(sys.argv) > 3 else "last_id_token.jwt", "w").write(tok["id_token"])
