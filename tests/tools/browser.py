#!/usr/bin/python3
# browser: a small headless-Chromium driver over the DevTools protocol, for the escrow
# portal's browser tests. A library (class browser: navigate, fill, click, text/HTML,
# screenshot, download) and a CLI running scripted portal flows (portal-flow, wrong-code,
# open) that print one JSON summary on stdout and exit non-zero with a message on any step
# failing. Chromium runs with a private temporary profile, a phone-size viewport and page
# JavaScript off (the portal must work without it); every wait is bounded; Chromium is
# killed by its PID on every exit path and dies with this process.
# Debian packages only: python3, python3-websocket, chromium (libnss3-tools for --ca).
import argparse
import base64
import ctypes
import hashlib
import html.parser
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

try:
    import websocket   # python3-websocket (websocket-client)
except ImportError:     # reported by the caller (CLI: exit 77, "skip")
    websocket = None

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
SKIP = 77   # meson's "skipped" exit code


class driver_error(Exception):
    """A step failed: the message says which and why."""


def find_chromium():
    """The Chromium binary: Debian's real binary first (the /usr/bin/chromium launcher is a
    shell script that sources /etc/chromium.d and adds flags of its own), then PATH."""
    for c in CHROMIUM_CANDIDATES:
        p = c if os.path.isabs(c) else shutil.which(c)
        if p and os.access(p, os.X_OK):
            return p
    return None


def missing_prerequisite():
    """Why the driver cannot run here, or None."""
    if websocket is None:
        return "python3-websocket is not installed (tools/install-deps)"
    if find_chromium() is None:
        return "chromium is not installed (tools/install-deps)"
    return None


def _prctl(option, value):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, int(value), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _set_pdeathsig(sig):
    """Ask the kernel to send `sig` to this process when its parent exits."""
    _prctl(PR_SET_PDEATHSIG, sig)


def become_subreaper():
    """Adopt orphaned descendants: Chromium's helpers outlive its browser process for a moment
    and would otherwise become zombies under an init that may not reap (containers)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _chromium_preexec():
    # Chromium leads its own process group (its zygote, renderer and GPU helpers join it),
    # so the group can be killed by Chromium's PID; and it dies if the driver dies.
    os.setpgid(0, 0)
    _set_pdeathsig(signal.SIGKILL)


class _text_of(html.parser.HTMLParser):
    """Visible text of an HTML document (without style/script/head/template content)."""
    HIDDEN = {"style", "script", "head", "title", "template", "noscript"}
    BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "li", "dt", "dd", "pre", "br", "tr", "form",
             "main", "section", "ul", "ol", "dl", "table", "label", "button"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.out.append(data)


def html_to_text(doc):
    """Return the visible text of `doc`, whitespace collapsed, one block per line."""
    p = _text_of()
    p.feed(doc)
    p.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", l).strip() for l in "".join(p.out).split("\n"))
    return "\n".join(l for l in lines if l)


class browser:
    """One headless Chromium with one page, driven over the DevTools protocol.

    Use as a context manager (or call close()): Chromium is killed whatever happens.
    `ca_file`: a CA certificate Chromium trusts (an NSS database built with certutil in the
    private HOME); `insecure`: --ignore-certificate-errors instead (a fallback when certutil
    is missing). `resolve`: {host: ip} for names in links (everything else resolves to
    nothing: the browser can reach only what the test names). `timeout`: seconds per step."""

    def __init__(self, *, ca_file=None, insecure=False, resolve=None, width=390, height=844,
                 scale=2, javascript=False, timeout=20.0, chromium=None, log=None):
        self.timeout = float(timeout)
        self.log = log or (lambda text: None)
        self.proc = None
        self.ws = None
        self.tmp = tempfile.mkdtemp(prefix="sr-browser-")
        self.next_id = 0
        self.events = []          # (sessionId or None, method, params) not yet consumed
        self.session = None
        self.net = {}              # requestId -> {url, status, error} (bounded; for failure reports)
        self.frame_sessions = {}   # out-of-process iframes (sandboxed srcdoc): targetId -> sessionId
        self.last_document = None  # the last main-frame document response (status, headers, url)
        self.frame_id = None
        try:
            self._start(ca_file, insecure, resolve or {}, chromium)
            self._open_page(width, height, scale, javascript)
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------

    def _start(self, ca_file, insecure, resolve, chromium):
        exe = chromium or find_chromium()
        if not exe:
            raise driver_error("chromium not found")
        if websocket is None:
            raise driver_error("python3-websocket not installed")
        home = os.path.join(self.tmp, "home")
        profile = os.path.join(self.tmp, "profile")
        os.makedirs(home)
        os.makedirs(profile)
        if ca_file:
            self._trust(home, ca_file)
        rules = [f"MAP {h} {ip}" for h, ip in resolve.items()]
        rules += ["MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.*"]
        args = [
            exe,
            "--headless=new",
            # The tests run as root, where Chromium's setuid/namespace sandbox refuses to start;
            # the pages are our own portal on loopback, never content from outside.
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",        # any free port, read from DevToolsActivePort
            "--remote-debugging-address=127.0.0.1",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu",
            "--disable-dev-shm-usage",          # containers often have a tiny /dev/shm
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--disable-breakpad",
            "--metrics-recording-only", "--mute-audio", "--password-store=basic",
            "--no-proxy-server", f"--host-resolver-rules={', '.join(rules)}",
            "--hide-scrollbars",
            "about:blank",
        ]
        if insecure:
            # Fallback only: Chromium has no flag to trust one CA file; --ca builds an NSS db.
            args.insert(2, "--ignore-certificate-errors")
        env = dict(os.environ)
        env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"), TZ="UTC", LANG="C.UTF-8")
        for k in ("DISPLAY", "WAYLAND_DISPLAY", "http_proxy", "https_proxy", "HTTP_PROXY",
                  "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(k, None)
        self.chrome_log = open(os.path.join(self.tmp, "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.chrome_log,
                                     stderr=subprocess.STDOUT, env=env, preexec_fn=_chromium_preexec,
                                     close_fds=True)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + max(self.timeout, 30.0)
        port = path = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise driver_error(f"chromium exited with {self.proc.returncode} at start: {self._chrome_tail()}")
            try:
                with open(port_file, encoding="ascii") as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/"):
                    port, path = int(lines[0]), lines[1].strip()
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if port is None:
            raise driver_error(f"chromium wrote no DevToolsActivePort in time: {self._chrome_tail()}")
        # No Origin header: Chromium refuses DevTools websockets from unlisted origins.
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=self.timeout,
                                              suppress_origin=True, enable_multithread=False)

    def _trust(self, home, ca_file):
        """Build $HOME/.pki/nssdb (what Chromium on Linux reads) trusting `ca_file` for TLS."""
        certutil = shutil.which("certutil")
        if not certutil:
            raise driver_error("--ca needs certutil (Debian libnss3-tools; tools/install-deps)")
        db = os.path.join(home, ".pki", "nssdb")
        os.makedirs(db)
        for cmd in ([certutil, "-N", "-d", f"sql:{db}", "--empty-password"],
                    [certutil, "-A", "-d", f"sql:{db}", "-n", "sealrelay-test-ca", "-t", "C,,",
                     "-i", ca_file]):
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if r.returncode != 0:
                raise driver_error(f"{' '.join(cmd[:2])} failed: {r.stderr.decode(errors='replace').strip()}")

    def _chrome_tail(self):
        try:
            self.chrome_log.flush()
            with open(os.path.join(self.tmp, "chromium.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip()
        except (OSError, AttributeError, ValueError):
            return ""

    def close(self):
        """Close Chromium (gracefully, then SIGTERM, then SIGKILL to its group) and remove the profile."""
        if self.ws is not None:
            try:
                self.ws.settimeout(2)
                self._send_raw("Browser.close", {}, None)
            except Exception:
                pass
        p = self.proc
        if p is not None and p.poll() is None:
            for sig, wait in ((None, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                if sig is not None:
                    try:
                        # Chromium leads its own group (see _chromium_preexec): its helpers go too.
                        os.killpg(p.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        try:
                            os.kill(p.pid, sig)
                        except ProcessLookupError:
                            pass
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGKILL)   # helpers that outlived the browser process
            except (ProcessLookupError, PermissionError):
                pass
            # Reap the helpers this process adopted (become_subreaper), bounded.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                try:
                    pid, _ = os.waitpid(-p.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    time.sleep(0.02)
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        self.proc = None
        if getattr(self, "chrome_log", None):
            self.chrome_log.close()
            self.chrome_log = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- protocol ---------------------------------------------------------------------------

    def _send_raw(self, method, params, session):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        return self.next_id

    def _read_one(self, deadline):
        """Read one protocol message before `deadline`; None when the deadline passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.ws.settimeout(max(0.01, min(left, 1.0)))
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as e:
            raise driver_error(f"DevTools connection lost: {e}; {self._chrome_tail()}")
        return json.loads(raw)

    def call(self, method, params=None, *, browser_level=False, timeout=None, session=None):
        """Send one command (to the page's session unless browser_level or another `session`)
        and return its result."""
        n = self._send_raw(method, params or {}, None if browser_level else (session or self.session))
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            m = self._read_one(deadline)
            if m is None:
                continue
            if m.get("id") == n:
                if "error" in m:
                    raise driver_error(f"{method}: {m['error'].get('message')} {m['error'].get('data', '')}".strip())
                return m.get("result", {})
            if "method" in m:
                self._note_event(m)
        raise driver_error(f"{method}: no answer within {timeout or self.timeout:.0f} s")

    def _note_event(self, m):
        method, params = m["method"], m.get("params", {})
        if method == "Network.responseReceived" and params.get("type") == "Document" \
                and params.get("frameId") == self.frame_id:
            r = params.get("response", {})
            self.last_document = {"url": r.get("url"), "status": r.get("status"),
                                  "headers": {k.lower(): v for k, v in r.get("headers", {}).items()}}
        if method in ("Network.requestWillBeSent", "Network.responseReceived", "Network.loadingFailed",
                      "Network.loadingFinished") and m.get("sessionId") == self.session:
            rid = params.get("requestId")
            e = self.net.setdefault(rid, {"url": (params.get("request") or {}).get("url")})
            if method == "Network.responseReceived":
                e["status"] = params.get("response", {}).get("status")
            elif method == "Network.loadingFailed":
                e["error"] = params.get("errorText")
            elif method == "Network.loadingFinished":
                e["done"] = True
            if len(self.net) > 200:
                self.net.pop(next(iter(self.net)))
        if method == "Target.attachedToTarget" and params.get("targetInfo", {}).get("type") == "iframe":
            self.frame_sessions[params["targetInfo"]["targetId"]] = params["sessionId"]
        elif method == "Target.detachedFromTarget":
            for k, v in list(self.frame_sessions.items()):
                if v == params.get("sessionId"):
                    del self.frame_sessions[k]
        self.events.append((m.get("sessionId"), method, params))
        del self.events[:-500]   # bounded: nobody waits for anything that old

    def wait_event(self, method, pred=lambda p: True, timeout=None):
        """Return the params of the first event `method` (already seen or arriving) with pred(params)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, (_, meth, params) in enumerate(self.events):
                if meth == method and pred(params):
                    del self.events[:i + 1]
                    return params
            if time.monotonic() >= deadline:
                raise driver_error(f"no {method} within {timeout or self.timeout:.0f} s")
            m = self._read_one(deadline)
            if m is not None and "method" in m:
                self._note_event(m)

    def _open_page(self, width, height, scale, javascript):
        t = self.call("Target.createTarget", {"url": "about:blank"}, browser_level=True)
        a = self.call("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True}, browser_level=True)
        self.session = a["sessionId"]
        self.frame_id = t["targetId"]   # a page target's id is its main frame's id
        for m in ("Page.enable", "DOM.enable", "Network.enable"):
            self.call(m)
        # Sandboxed iframes (the message's HTML part) run in their own process: attach to them
        # to read their documents. They start at once (no wait for a debugger).
        self.call("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True})
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": True})
        self.call("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
        if not javascript:
            # The portal's pages must work without JavaScript: the page runs none at all.
            self.call("Emulation.setScriptExecutionDisabled", {"value": True})
        self.events.clear()

    # -- page actions -----------------------------------------------------------------------

    def navigate(self, url):
        """Open `url` and wait for its load event; the document response (status, headers)."""
        self.events.clear()
        self.last_document = None
        r = self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise driver_error(f"navigate {url}: {r['errorText']}")
        self.wait_event("Page.loadEventFired")
        return self.last_document

    def _node(self, selector):
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        n = self.call("DOM.querySelector", {"nodeId": root, "selector": selector}).get("nodeId", 0)
        if not n:
            raise driver_error(f"no element matches {selector!r} on {self.url()}")
        return n

    def exists(self, selector):
        """Return True when an element matches `selector`."""
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        return bool(self.call("DOM.querySelector", {"nodeId": root, "selector": selector}).get("nodeId", 0))

    def fill(self, selector, text):
        """Type `text` into the empty field `selector` as a user would (focus, then key input)."""
        n = self._node(selector)
        self.call("DOM.scrollIntoViewIfNeeded", {"nodeId": n})
        self.call("DOM.focus", {"nodeId": n})
        self.call("Input.insertText", {"text": text})

    def click(self, selector, *, wait_load=True):
        """Tap the element `selector` (a real pointer event at its centre) once it is the
        element at that point (scrolled into view, not covered, layout settled); wait for the
        next load unless told not to."""
        n = self._node(selector)
        want = self._subtree_ids(n)   # the point may hit a child (a <b> in a link)
        x = y = None
        seen = "?"
        deadline = time.monotonic() + self.timeout
        for _ in range(50):   # bounded: a few tries while scrolling and layout settle
            self.call("DOM.scrollIntoViewIfNeeded", {"nodeId": n})
            # Let a frame be drawn after the scroll: the browser routes a pointer event by the
            # last frame's hit-test data, and a stale one sends it to whatever was there
            # before (the message's out-of-process sandboxed frame, say). A one-pixel
            # screenshot waits for a fresh frame.
            self.call("Page.captureScreenshot", {"format": "png", "clip": {"x": 0, "y": 0, "width": 1,
                                                                           "height": 1, "scale": 1}})
            quads = self.call("DOM.getContentQuads", {"nodeId": n}).get("quads") or []
            if quads:
                q = quads[0]
                cx, cy = sum(q[0::2]) / 4, sum(q[1::2]) / 4
                try:
                    # Quads are in viewport coordinates, the hit test in the document's.
                    vv = self.call("Page.getLayoutMetrics").get("cssVisualViewport", {})
                    hit = self.call("DOM.getNodeForLocation",
                                    {"x": int(cx + vv.get("pageX", 0)), "y": int(cy + vv.get("pageY", 0)),
                                     "includeUserAgentShadowDOM": True})
                    seen = hit.get("backendNodeId")
                    if seen in want:
                        x, y = int(cx), int(cy)
                        break
                except driver_error as e:
                    seen = str(e)
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if x is None:
            raise driver_error(f"{selector!r} cannot be tapped on {self.url()} (at its centre: {seen})")
        self.events.clear()
        self.last_document = None
        for t in ("mouseMoved", "mousePressed", "mouseReleased"):
            p = {"type": t, "x": x, "y": y}
            if t != "mouseMoved":
                p.update(button="left", clickCount=1)
            self.call("Input.dispatchMouseEvent", p)
        if wait_load:
            self.wait_event("Page.loadEventFired")
            return self.last_document
        return None

    def _subtree_ids(self, node_id):
        """The backend ids of the element `node_id` and everything inside it (bounded)."""
        root = self.call("DOM.describeNode", {"nodeId": node_id, "depth": -1})["node"]
        ids, stack = set(), [root]
        while stack and len(ids) < 10000:
            node = stack.pop()
            ids.add(node.get("backendNodeId"))
            stack.extend(node.get("children", []))
        return ids

    def submit(self, form_selector):
        """Press the submit button of the form `form_selector`; the response document."""
        return self.click(f"{form_selector} [type=submit]")

    def url(self):
        """Return the current document URL."""
        try:
            return self.call("DOM.getDocument", {"depth": 0})["root"].get("documentURL", "")
        except driver_error:
            return "?"

    def html(self):
        """Return the main document's serialised HTML."""
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        return self.call("DOM.getOuterHTML", {"nodeId": root})["outerHTML"]

    def frames_html(self):
        """Return the serialised documents of the page's iframes: those in the page's process
        (in document order), then the out-of-process ones (sandboxed srcdoc frames)."""
        root = self.call("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
        out, stack, budget = [], [root], 100000
        while stack and budget > 0:
            budget -= 1
            node = stack.pop()
            cd = node.get("contentDocument")
            if cd is not None:
                out.append(self.call("DOM.getOuterHTML", {"backendNodeId": cd["backendNodeId"]})["outerHTML"])
            stack.extend(reversed(node.get("children", [])))
        for sid in list(self.frame_sessions.values()):
            try:
                r = self.call("DOM.getDocument", {"depth": 0}, session=sid)["root"]["nodeId"]
                out.append(self.call("DOM.getOuterHTML", {"nodeId": r}, session=sid)["outerHTML"])
            except driver_error:
                continue   # detached meanwhile (a navigation)
        return out

    def text(self):
        """Return the visible text of the main document (iframes not included)."""
        return html_to_text(self.html())

    def layout(self):
        """Return the CSS layout width of the viewport and of the content (a phone fit check)."""
        m = self.call("Page.getLayoutMetrics")
        vp = m.get("cssLayoutViewport") or m.get("layoutViewport")
        cs = m.get("cssContentSize") or m.get("contentSize")
        return {"viewport_width": vp["clientWidth"], "content_width": cs["width"],
                "content_height": cs["height"], "fits_width": cs["width"] <= vp["clientWidth"] + 0.5}

    def screenshot(self, path, *, full_page=False):
        """Write a PNG of the viewport (or the whole page) to `path`; its size in bytes."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            lay = self.layout()
            params["clip"] = {"x": 0, "y": 0, "width": lay["viewport_width"],
                              "height": min(lay["content_height"], 8000), "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def download(self, selector, directory):
        """Tap the link `selector` and wait until its download is complete in `directory`;
        return {path, suggested_filename, bytes, sha256}. The file keeps the name the server
        suggested (Content-Disposition), reduced to a plain file name."""
        directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.call("Browser.setDownloadBehavior",
                  {"behavior": "allowAndName", "downloadPath": directory, "eventsEnabled": True},
                  browser_level=True)
        self.click(selector, wait_load=False)
        try:
            begin = self.wait_event("Browser.downloadWillBegin")
        except driver_error as e:
            shot = os.path.join(directory, "download-failed.png")
            try:
                self.screenshot(shot)
            except driver_error:
                pass
            seen = [v for v in self.net.values() if v.get("url") and "/a/" in v["url"]]
            raise driver_error(f"{e} after tapping {selector!r} on {self.url()} (requests: {seen}; screenshot {shot})")
        guid = begin["guid"]
        done = self.wait_event("Browser.downloadProgress",
                               lambda p: p.get("guid") == guid and p.get("state") in ("completed", "canceled"))
        if done["state"] != "completed":
            raise driver_error(f"download of {begin.get('url')} was canceled")
        src = os.path.join(directory, guid)
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(src) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.exists(src):
            raise driver_error(f"download {guid} reported complete but {src} is missing")
        name = os.path.basename(begin.get("suggestedFilename") or "") or guid
        if name in (".", ".."):
            name = guid
        dst = os.path.join(directory, name)
        os.replace(src, dst)
        with open(dst, "rb") as f:
            data = f.read()
        return {"path": dst, "url": begin.get("url"), "suggested_filename": begin.get("suggestedFilename"),
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def fetch_status(self, url):
        """Return the status of the current document (after navigate/click), or None."""
        return (self.last_document or {}).get("status")


# -- portal flows (CLI) ----------------------------------------------------------------------

REQUEST_FORM = 'form[action$="/code"]'
CODE_FORM = 'form:has(input[name="code"])'


def run_code_cmd(cmd, timeout, exclude=None):
    """Run `cmd` (a shell command printing the 6-digit code) until it prints a code other than
    `exclude`; bounded by `timeout` seconds and 200 runs."""
    deadline = time.monotonic() + timeout
    last = ""
    for _ in range(200):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            r = subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=max(1.0, min(left, 15.0)), start_new_session=True)
            out = r.stdout.decode(errors="replace").strip()
            m = re.fullmatch(r"[0-9]{6}", out)
            if r.returncode == 0 and m and out != exclude:
                return out
            last = f"exit {r.returncode}, stdout {out[:80]!r}, stderr {r.stderr.decode(errors='replace').strip()[:200]!r}"
        except subprocess.TimeoutExpired:
            last = "timed out"
        time.sleep(0.2)
    raise driver_error(f"--code-cmd gave no new 6-digit code within {timeout:.0f} s (last: {last})")


def page_info(b, doc, shot=None):
    """One page of a flow's summary: url, status, security headers, text, layout, screenshot."""
    info = {"url": b.url(), "status": (doc or {}).get("status"), "text": b.text()}
    hdr = (doc or {}).get("headers", {})
    info["headers"] = {k: hdr[k] for k in ("content-security-policy", "cache-control", "x-frame-options",
                                            "referrer-policy", "x-content-type-options", "content-type")
                       if k in hdr}
    info["layout"] = b.layout()
    if shot:
        info["screenshot"] = shot
        info["screenshot_bytes"] = b.screenshot(shot)
    return info


def wrong_code(real):
    """A 6-digit code that is not `real`."""
    while True:
        c = f"{random.randrange(1000000):06d}"
        if c != real:
            return c


def flow_portal(b, o):
    out = os.path.abspath(o.out)
    os.makedirs(out, exist_ok=True)
    s = {"flow": "portal-flow", "pages": {}}
    doc = b.navigate(o.link)
    s["pages"]["link"] = page_info(b, doc, os.path.join(out, "01-link.png"))
    if not b.exists(REQUEST_FORM):
        raise driver_error(f"the link's page has no code request form: {s['pages']['link']['text'][:300]!r}")
    doc = b.submit(REQUEST_FORM)
    s["pages"]["code_requested"] = page_info(b, doc, os.path.join(out, "02-enter-code.png"))
    if not b.exists(CODE_FORM):
        raise driver_error(f"no code form after the request: {s['pages']['code_requested']['text'][:300]!r}")
    code = run_code_cmd(o.code_cmd, o.code_timeout)
    s["code"] = code
    b.fill('input[name="code"]', code)
    doc = b.submit(CODE_FORM)
    msg = page_info(b, doc, os.path.join(out, "03-message.png"))
    msg["screenshot_full"] = os.path.join(out, "03-message-full.png")
    b.screenshot(msg["screenshot_full"], full_page=True)
    page_html = b.html()
    msg["html"] = page_html
    msg["frames"] = b.frames_html()
    msg["frames_text"] = [html_to_text(f) for f in msg["frames"]]
    msg["has_script"] = bool(re.search(r"<script\b", page_html, re.I)) or \
        any(re.search(r"<script\b", f, re.I) for f in msg["frames"])
    msg["attachments"] = re.findall(r'href="([^"]*/a/[0-9]+)"', page_html)
    s["pages"]["message"] = msg
    s["attachment"] = None
    if o.download:
        sel = 'a[href$="/a/0"]'
        if not b.exists(sel):
            raise driver_error(f"the message page has no attachment link /a/0: {msg['text'][:300]!r}")
        s["attachment"] = b.download(sel, out if o.download_dir is None else o.download_dir)
    return s


def flow_wrong_code(b, o):
    out = os.path.abspath(o.out)
    os.makedirs(out, exist_ok=True)
    s = {"flow": "wrong-code", "pages": {}, "tries": []}
    doc = b.navigate(o.link)
    s["pages"]["link"] = page_info(b, doc, os.path.join(out, "01-link.png"))
    real = None
    if not o.no_request:
        if not b.exists(REQUEST_FORM):
            raise driver_error(f"the link's page has no code request form: {s['pages']['link']['text'][:300]!r}")
        doc = b.submit(REQUEST_FORM)
        s["pages"]["code_requested"] = page_info(b, doc, os.path.join(out, "02-enter-code.png"))
        if o.code_cmd:
            real = run_code_cmd(o.code_cmd, o.code_timeout)
            s["code"] = real
    for i in range(o.tries):
        if not b.exists(CODE_FORM):
            s["tries"].append({"code": None, "stopped": "no code form", "text": b.text()})
            break
        c = wrong_code(real)
        b.fill('input[name="code"]', c)
        doc = b.submit(CODE_FORM)
        info = page_info(b, doc, os.path.join(out, f"wrong-{i + 1}.png"))
        info["code"] = c
        s["tries"].append(info)
    if o.then_right:
        if real is None:
            raise driver_error("--then-right needs --code-cmd")
        if b.exists(CODE_FORM):
            b.fill('input[name="code"]', real)
            doc = b.submit(CODE_FORM)
            s["pages"]["right_code"] = page_info(b, doc, os.path.join(out, "right-code.png"))
        else:
            # No code form any more (locked): a reader can only open the link again and, if
            # the page offers it, ask for a new code and enter that one.
            doc = b.navigate(o.link)
            s["pages"]["reopened"] = page_info(b, doc, os.path.join(out, "reopened.png"))
            if b.exists(REQUEST_FORM):
                doc = b.submit(REQUEST_FORM)
                s["pages"]["rerequested"] = page_info(b, doc, os.path.join(out, "rerequested.png"))
                if b.exists(CODE_FORM):
                    real = run_code_cmd(o.code_cmd, o.code_timeout, exclude=real)
                    b.fill('input[name="code"]', real)
                    doc = b.submit(CODE_FORM)
                    s["pages"]["right_code"] = page_info(b, doc, os.path.join(out, "right-code.png"))
    return s


def code_from_mx(record, rcpt, skip=0, subject="code"):
    """The 6-digit code of the newest code mail to `rcpt` in a fake_mx.py record file (one
    JSON line per transaction): the first 6-digit number standing alone (not inside a token
    such as a link's secret) in the decoded text of a mail whose Subject contains `subject`
    (any case; the escrow notice's does not). `skip`: ignore that many matching mails from
    the end (an older code). None when there is none (yet)."""
    import email
    import email.policy
    codes = []
    try:
        with open(record, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines[-1000:]:
        try:
            r = json.loads(line)
        except ValueError:
            continue   # a line being written
        if rcpt.lower() not in (x.strip("<>").lower() for x in r.get("rcpts", ())):
            continue
        raw = r.get("data", "").encode("utf-8", errors="surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if subject.lower() not in str(msg.get("Subject", "")).lower():
            continue
        for part in msg.walk():
            if part.get_content_maintype() != "text":
                continue
            try:
                body = part.get_content()
            except (LookupError, ValueError):
                continue
            m = re.search(r"(?<![0-9A-Za-z_-])([0-9]{6})(?![0-9A-Za-z_-])", body)
            if m:
                codes.append(m.group(1))
                break
    return codes[-1 - skip] if len(codes) > skip else None


def flow_open(b, o):
    out = os.path.abspath(o.out)
    os.makedirs(out, exist_ok=True)
    doc = b.navigate(o.link)
    info = page_info(b, doc, os.path.join(out, (o.name or "open") + ".png"))
    info["html"] = b.html()
    info["has_request_form"] = b.exists(REQUEST_FORM)
    info["has_code_form"] = b.exists(CODE_FORM)
    return {"flow": "open", "pages": {"link": info}}


def main(argv=None):
    p = argparse.ArgumentParser(description="Headless-Chromium driver for the escrow portal tests.")
    sub = p.add_subparsers(dest="flow", required=True)

    def common(sp):
        sp.add_argument("--link", required=True, help="the portal link (https://.../m/<id>/<secret>)")
        sp.add_argument("--out", required=True, help="directory for screenshots and downloads")
        sp.add_argument("--ca", help="CA certificate to trust (NSS db via certutil)")
        sp.add_argument("--insecure", action="store_true",
                        help="--ignore-certificate-errors instead of --ca (when certutil is missing)")
        sp.add_argument("--resolve", action="append", default=[], metavar="HOST=IP",
                        help="resolve HOST to IP (loopback); other names do not resolve")
        sp.add_argument("--timeout", type=float, default=20.0, help="seconds per browser step")
        sp.add_argument("--code-timeout", type=float, default=30.0, help="seconds to wait for --code-cmd")
        sp.add_argument("--javascript", action="store_true", help="leave page JavaScript on")
        sp.add_argument("--json", help="also write the JSON summary to this file")

    pf = sub.add_parser("portal-flow", help="link -> request code -> enter it -> message -> download /a/0")
    common(pf)
    pf.add_argument("--code-cmd", required=True, help="shell command printing the 6-digit code")
    pf.add_argument("--no-download", dest="download", action="store_false")
    pf.add_argument("--download-dir", help="where the attachment goes (default --out)")
    wc = sub.add_parser("wrong-code", help="link -> request code -> N wrong codes [-> the right one]")
    common(wc)
    wc.add_argument("--tries", type=int, default=1)
    wc.add_argument("--code-cmd", help="shell command printing the real code (wrong ones differ from it)")
    wc.add_argument("--then-right", action="store_true", help="enter the real code after the wrong ones")
    wc.add_argument("--no-request", action="store_true", help="the link page already has the code form")
    op = sub.add_parser("open", help="open the link; report the page")
    common(op)
    op.add_argument("--name", help="screenshot file name (without .png)")
    sub.add_parser("check", help="exit 0 when the driver can run here, 77 (with the reason) when not")
    mc = sub.add_parser("mx-code", help="print the newest code mailed to --rcpt in a fake_mx.py --record file")
    mc.add_argument("--record", required=True)
    mc.add_argument("--rcpt", required=True)
    mc.add_argument("--subject", default="code", help="a code mail's Subject contains this (any case)")
    o = p.parse_args(argv)
    if o.flow == "mx-code":
        code = code_from_mx(o.record, o.rcpt, subject=o.subject)
        if code is None:
            print(f"browser.py mx-code: no code mail to {o.rcpt} in {o.record}", file=sys.stderr)
            return 1
        print(code)
        return 0

    why = missing_prerequisite()
    if why:
        print(f"browser.py: skipped: {why}", file=sys.stderr)
        return SKIP
    if o.flow == "check":
        return 0
    if not 1 <= getattr(o, "tries", 1) <= 20:
        p.error("--tries: 1..20")
    resolve = {}
    for r in o.resolve:
        h, sep, ip = r.partition("=")
        if not sep:
            p.error(f"bad --resolve {r!r} (HOST=IP)")
        resolve[h] = ip

    # Die with the parent (the C++ test): SIGTERM runs the cleanup below, which kills Chromium.
    parent = os.getppid()
    _set_pdeathsig(signal.SIGTERM)
    become_subreaper()
    if os.getppid() != parent:
        return 1

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    flows = {"portal-flow": flow_portal, "wrong-code": flow_wrong_code, "open": flow_open}
    try:
        with browser(ca_file=o.ca, insecure=o.insecure, resolve=resolve, timeout=o.timeout,
                     javascript=o.javascript) as b:
            summary = flows[o.flow](b, o)
    except driver_error as e:
        print(f"browser.py {o.flow}: {e}", file=sys.stderr)
        return 1
    text = json.dumps(summary, indent=1, ensure_ascii=False) + "\n"
    if o.json:
        with open(o.json + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(o.json + ".tmp", o.json)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
