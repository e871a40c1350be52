#!/usr/bin/python3
# portal_stub: a stand-in escrow portal over HTTPS for the browser driver's self-test
# (tests/tools/browser_test.py), shaped like the real one (DESIGN.md §7, fallback/portal_pages):
# GET /m/<id>/<secret> asks for a code; POST .../code "mails" a 6-digit code (writes it to
# --code-file); POST /m/<id>/<secret> with `code` shows a message with a sandboxed srcdoc
# iframe and an attachment link .../a/0 (Content-Disposition attachment); five wrong codes
# lock it. Every <id>/<secret> is a message of its own (fresh state on first use). /script is a page whose script would rewrite the page if JavaScript ran.
# Prints "ready PORT"; exits 0 on SIGTERM. Standard library only; loopback only.
import argparse
import hashlib
import html
import http.server
import ipaddress
import json
import os
import random
import re
import signal
import ssl
import sys
import threading
import urllib.parse

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: cid: 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STYLE = ("body{font-family:sans-serif;margin:0;padding:1em}main{max-width:44em;margin:0 auto}"
         "input,button{font-size:1.1em;max-width:100%}iframe{width:100%;height:40vh}")


def page(title, inner):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main><h1>{html.escape(title)}</h1>{inner}</main></body></html>\n")


class message:
    """One escrowed message of the stub: its code, wrong tries and lock."""

    def __init__(self):
        self.code = None
        self.wrong = 0
        self.locked = False


class state:
    def __init__(self, o):
        self.o = o
        self.lock = threading.RLock()   # log_message runs inside locked sections
        self.messages = {}              # "/m/<id>/<secret>" -> message (any id works)
        with open(o.attachment, "rb") as f:
            self.attachment = f.read()

    def message(self, base):
        with self.lock:
            return self.messages.setdefault(base, message())


PATH = re.compile(r"(/m/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+)(/code|/a/0)?")


def forms(base):
    request_form = (f'<form method="post" action="{base}/code">'
                    '<button type="submit">Email me a code</button></form>')
    code_form = (f'<form method="post" action="{base}"><p><label for="code">Code</label><br>'
                 '<input id="code" name="code" type="text" inputmode="numeric" maxlength="6" '
                 'autocomplete="one-time-code" required></p>'
                 '<p><button type="submit">Show the message</button></p></form>')
    return request_form, code_form


LOCKED = page("Message locked", "<p>Too many wrong codes: locked.</p>")
NOT_FOUND = page("Not available", "<p>This message is not available.</p>")


def make_handler(st):
    class handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if st.o.record:
                with st.lock, open(st.o.record, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"method": self.command, "path": self.path}) + "\n")

        def send(self, status, body, ctype="text/html; charset=utf-8", extra=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Frame-Options", "DENY")
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self):
            path = urllib.parse.urlsplit(self.path).path
            m = PATH.fullmatch(path)
            if not m:
                return path, None, None, None
            return path, m.group(1), m.group(2) or "", st.message(m.group(1))

        def do_GET(self):
            path, base, tail, msg = self.route()
            if path == "/script":
                # No CSP here: only the driver's own switch keeps this script from running.
                data = page("Script test", '<p id="t">static text</p>'
                            '<script>document.getElementById("t").textContent="JS-RAN";</script>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif path == "/long":
                # A link below the fold, under where a sandboxed (out-of-process) frame was
                # before the scroll: the driver must scroll, and tap only once a fresh frame
                # routes the tap to the link, not to the frame.
                self.send(200, page("Long page", '<iframe sandbox="" srcdoc="frame" '
                                    'style="height:1600px"></iframe><div style="height:400px">spacer</div>'
                                    '<p><a href="/m/long/page/a/0" download>report.pdf</a> (far down)</p>'))
            elif base is None or tail == "/code":
                self.send(404, NOT_FOUND)
            elif msg.locked:
                self.send(403, LOCKED)
            elif tail == "/a/0":
                self.send(200, st.attachment, "application/pdf",
                          [("Content-Disposition", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf")])
            else:
                self.send(200, page("Secure message", "<p>We send a one-time code first.</p>" + forms(base)[0]))

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(n, 65536)).decode(errors="replace")
            form = urllib.parse.parse_qs(body)
            path, base, tail, msg = self.route()
            if base is None or tail == "/a/0":
                self.send(404, NOT_FOUND)
                return
            request_form, code_form = forms(base)
            with st.lock:
                if msg.locked:
                    self.send(403, LOCKED)
                elif tail == "/code":
                    msg.code = f"{random.randrange(1000000):06d}"
                    tmp = st.o.code_file + ".tmp"
                    with open(tmp, "w", encoding="ascii") as f:
                        f.write(msg.code + "\n")
                    os.replace(tmp, st.o.code_file)
                    self.send(200, page("Enter your code", "<p>We sent a 6-digit code.</p>" + code_form))
                elif msg.code is None or (form.get("code") or [""])[0] != msg.code:
                    msg.wrong += 1
                    if msg.wrong >= 5:
                        msg.locked = True
                        self.send(403, LOCKED)
                    else:
                        self.send(403, page("Enter your code",
                                            f"<p>That code is not right. {5 - msg.wrong} tries left.</p>" + code_form))
                else:
                    msg.code = None
                    srcdoc = html.escape("<p>Hello from the <b>HTML part</b>.</p>", quote=True)
                    inner = ("<dl><dt>From</dt><dd>alice@bank.test</dd><dt>Subject</dt><dd>Statement</dd></dl>"
                             "<pre>The text part of the message.</pre>"
                             f'<iframe sandbox="" srcdoc="{srcdoc}"></iframe>'
                             f'<h2>Attachments</h2><ul><li><a href="{base}/a/0" download>report.pdf</a></li></ul>')
                    self.send(200, page("Secure message", inner))

    return handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--code-file", required=True)
    p.add_argument("--attachment", required=True)
    p.add_argument("--record")
    o = p.parse_args()
    host, _, port = o.listen.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit("portal_stub: loopback addresses only")
    st = state(o)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(o.cert, o.key)

    class tls_server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            # The handshake runs in the connection's own thread: an idle preconnect from
            # the browser must not hold up the accept loop.
            request.settimeout(10)
            try:
                tls = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            self.RequestHandlerClass(tls, client_address, self)

    srv = tls_server((host, int(port)), make_handler(st))
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    print(f"ready {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
