"""frontend_cors - browsers calling the API from another origin (CORS, the
Fetch standard): `dyn frontend --allowed-origins LIST`.

A preflight (OPTIONS with Access-Control-Request-Method) from an allowed
origin gets 204 with Access-Control-Allow-Origin naming that origin, the
methods and the headers the browser asked for; from any other origin 403.
Ordinary replies, streams included, to an allowed origin carry
Access-Control-Allow-Origin and Vary: Origin; to others nothing.  "*"
allows any origin.  Without the option (the default) nothing changes:
OPTIONS is a 405 naming the allowed methods and no reply carries CORS
headers.  A preflight needs no API key (browsers never send one with it).
"""
import http.client
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
A, B = "http://app.example", "http://localhost:3000"

w = d.worker()
fe = d.frontend(["--allowed-origins", f"{A}, {B}", "--api-key", "k"])
star = d.frontend(["--allowed-origins", "*"])
off = d.frontend()
for f in (fe, star, off):
    d.wait_until(lambda: NAME in d.http_get(f.url + "/v1/models")[1] or
                 d.http_get(f.url + "/v1/models")[0] == 401)


def request(f, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


pre = {"Origin": A, "Access-Control-Request-Method": "POST",
       "Access-Control-Request-Headers": "authorization, content-type"}
st, h, body = request(fe, "OPTIONS", "/v1/chat/completions", pre)
d.check("preflight from an allowed origin: 204, no key needed", st == 204 and body == b"",
        f"{st} {body[:200]!r}")
d.check("preflight: Allow-Origin names the origin, Vary: Origin",
        h.get("access-control-allow-origin") == A and h.get("vary") == "Origin", str(h))
d.check("preflight: POST among the allowed methods, the asked headers allowed",
        "POST" in h.get("access-control-allow-methods", "") and
        h.get("access-control-allow-headers") == "authorization, content-type", str(h))
d.check("preflight: a 204 says no Content-Length", "content-length" not in h, str(h))
st, h, body = request(fe, "OPTIONS", "/v1/models", dict(pre, Origin=B))
d.check("the second origin of the list (spaces around the comma) is allowed",
        st == 204 and h.get("access-control-allow-origin") == B, f"{st} {h}")
st, h, body = request(fe, "OPTIONS", "/v1/models", dict(pre, Origin="http://evil.example"))
d.check("preflight from another origin: 403, no Allow-Origin",
        st == 403 and "access-control-allow-origin" not in h and
        json.loads(body)["error"]["type"] == "invalid_request_error", f"{st} {h} {body!r}")
st, h, body = request(fe, "OPTIONS", "/v1/models", dict(pre, Origin=A + ".evil"))
d.check("an origin that only starts like an allowed one is not allowed", st == 403, str(st))

req = json.dumps({"model": NAME, "prompt": "Once", "max_tokens": 3}).encode()
hdrs = {"Origin": A, "Authorization": "Bearer k", "Content-Type": "application/json"}
st, h, body = request(fe, "POST", "/v1/completions", hdrs, req)
d.check("a request from an allowed origin: its reply names the origin",
        st == 200 and h.get("access-control-allow-origin") == A and h.get("vary") == "Origin",
        f"{st} {h}")
stream = json.dumps({"model": NAME, "prompt": "Once", "max_tokens": 3, "stream": True}).encode()
st, h, body = request(fe, "POST", "/v1/completions", hdrs, stream)
d.check("a stream to an allowed origin names it too",
        st == 200 and h.get("access-control-allow-origin") == A and b"[DONE]" in body,
        f"{st} {h}")
st, h, body = request(fe, "POST", "/v1/completions", dict(hdrs, Authorization="Bearer no"), req)
d.check("an error reply to an allowed origin names it (the page can read the 401)",
        st == 401 and h.get("access-control-allow-origin") == A, f"{st} {h}")
st, h, body = request(fe, "POST", "/v1/completions", dict(hdrs, Origin="http://evil.example"),
                      req)
d.check("a request from another origin: answered, without Allow-Origin",
        st == 200 and "access-control-allow-origin" not in h, f"{st} {h}")

st, h, body = request(star, "OPTIONS", "/v1/models", dict(pre, Origin="http://any.example"))
d.check("--allowed-origins '*': any origin, Allow-Origin *",
        st == 204 and h.get("access-control-allow-origin") == "*", f"{st} {h}")

st, h, body = request(off, "OPTIONS", "/v1/models", pre)
d.check("without --allowed-origins: OPTIONS is a 405 naming the allowed methods",
        st == 405 and "allow" in h and "access-control-allow-origin" not in h, f"{st} {h}")
st, h, body = request(off, "GET", "/v1/models", {"Origin": A})
d.check("without --allowed-origins: no CORS headers", st == 200 and
        not any(k.startswith("access-control-") for k in h), str(h))

p = subprocess.run([d.DYN, "frontend", "--allowed-origins", "http://a\x01b"],
                   capture_output=True, text=True, timeout=20)
d.check("a control character in --allowed-origins: usage error",
        p.returncode == 2 and "--allowed-origins" in p.stderr, p.stderr)
d.finish()
