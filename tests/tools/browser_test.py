#!/usr/bin/python3
# browser_test: the self-test of tests/tools/browser.py (meson test `browser-driver`), against
# portal_stub.py on loopback HTTPS with the test CA: the CLI's portal-flow (navigation, form
# POSTs, the code read by --code-cmd, the sandboxed iframe's document, a download byte for
# byte, PNG screenshots at phone size), wrong-code (lock after five), JavaScript really off,
# an untrusted certificate refused, the mx-code helper, and Chromium gone after every run,
# also when the driver is stopped (SIGTERM) or killed (SIGKILL) mid-flow.
# Usage: browser_test.py SOURCE_ROOT [WORK_DIR]. Exit 77 (skip) only when chromium or
# python3-websocket is missing.
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS = os.path.join(SRC, "tests", "tools")
CERTS = os.path.join(SRC, "tests", "certs")
sys.path.insert(0, TOOLS)
import browser  # noqa: E402

PY = "/usr/bin/python3"
DRIVER = os.path.join(TOOLS, "browser.py")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def tagged_pids(tag):
    """PIDs of live (not zombie) processes whose environment carries `tag`."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{d}/environ", "rb") as f:
                if tag.encode() in f.read():
                    found.append(int(d))
        except (OSError, IndexError):
            continue
    return found


def reap():
    """Reap adopted orphans (this process is a subreaper), without blocking."""
    for _ in range(1000):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_gone(tag, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reap()
        if not tagged_pids(tag):
            return True
        time.sleep(0.1)
    return False


def run_driver(args, tag, timeout=120):
    env = dict(os.environ, SR_BROWSER_TEST_TAG=tag)
    r = subprocess.run([PY, DRIVER] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, env=env)
    summary = None
    if r.returncode == 0:
        try:
            summary = json.loads(r.stdout)
        except ValueError:
            pass
    return r.returncode, summary, r.stderr.decode(errors="replace")


def png_ok(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def main():
    why = browser.missing_prerequisite()
    if why:
        print(f"browser-driver: skipped: {why}")
        return 77
    browser.become_subreaper()
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="sr-browser-test-")
    shutil.rmtree(work, ignore_errors=True)   # the last run's artifacts
    os.makedirs(work)
    print(f"artifacts in {work}", flush=True)
    attachment = os.path.join(work, "attachment.bin")
    # PDF-like bytes with every byte value: a download must come back identical.
    data = b"%PDF-1.4\n" + bytes(range(256)) * 64 + os.urandom(4096) + b"\n%%EOF\n"
    with open(attachment, "wb") as f:
        f.write(data)
    code_file = os.path.join(work, "code.txt")
    stub = subprocess.Popen([PY, os.path.join(TOOLS, "portal_stub.py"), "--cert", os.path.join(CERTS, "server.crt"),
                             "--key", os.path.join(CERTS, "server.key"), "--code-file", code_file,
                             "--attachment", attachment, "--record", os.path.join(work, "stub.jsonl")],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = stub.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "ready":
            print("portal_stub did not start")
            return 1
        base = f"https://127.0.0.1:{line[1]}"
        link = base + "/m/testid/testsecret"
        ca = ["--ca", os.path.join(CERTS, "ca.crt")]

        # 1. The whole flow through the CLI, the hostname of the link mapped by --resolve.
        tag = uuid.uuid4().hex
        out = os.path.join(work, "flow")
        rc, s, err = run_driver(["portal-flow", "--link", f"https://portal.mx.test:{line[1]}/m/testid/testsecret",
                                 "--resolve", "portal.mx.test=127.0.0.1", "--code-cmd", f"cat {code_file}",
                                 "--out", out, "--json", os.path.join(work, "flow.json")] + ca, tag)
        if check(rc == 0 and s is not None, f"portal-flow exits 0 with a JSON summary ({err.strip()[-300:]})"):
            pages = s["pages"]
            with open(os.path.join(work, "flow.json"), encoding="utf-8") as f:
                check(json.load(f) == s, "--json writes the summary printed on stdout")
            check(pages["link"]["status"] == 200 and "Email me a code" in pages["link"]["text"], "link page asks for a code")
            check("default-src 'none'" in pages["link"]["headers"].get("content-security-policy", ""),
                  "response headers are reported")
            check("Enter your code" in pages["code_requested"]["text"], "code request POST shows the code form")
            with open(code_file, encoding="ascii") as f:
                check(s["code"] == f.read().strip(), "the code came from --code-cmd")
            msg = pages["message"]
            check(msg["status"] == 200 and "The text part of the message." in msg["text"], "the code POST shows the message")
            check(msg["frames_text"] == ["Hello from the HTML part."], f"the sandboxed iframe's document is read: {msg['frames_text']}")
            check(not msg["has_script"], "no script in the message page")
            check(all(p["layout"]["fits_width"] and p["layout"]["viewport_width"] == 390 for p in pages.values()),
                  "every page fits a 390 px wide viewport")
            a = s["attachment"] or {}
            check(a.get("sha256") == hashlib.sha256(data).hexdigest() and a.get("bytes") == len(data),
                  "the attachment downloads byte for byte")
            check(a.get("suggested_filename") == "report.pdf" and os.path.basename(a.get("path", "")) == "report.pdf",
                  "the download keeps the Content-Disposition filename")
            for p in pages.values():
                check(png_ok(p["screenshot"]) and png_size(p["screenshot"]) == (780, 1688),
                      f"screenshot {os.path.basename(p['screenshot'])} is a 780x1688 PNG (390x844 at 2x)")
        check(wait_gone(tag, 10), "no Chromium process left after portal-flow")

        # 2. JavaScript is off: a script that would rewrite the text does not run.
        tag = uuid.uuid4().hex
        rc, s, err = run_driver(["open", "--link", base + "/script", "--out", os.path.join(work, "script")] + ca, tag)
        check(rc == 0 and s and s["pages"]["link"]["text"] == "Script test\nstatic text",
              f"page scripts do not run ({(s or {}).get('pages', {}).get('link', {}).get('text')!r} {err.strip()[-200:]})")
        check(wait_gone(tag, 10), "no Chromium process left after open")

        # 3. Five wrong codes lock the message; the right code then no longer opens it.
        tag = uuid.uuid4().hex
        rc, s, err = run_driver(["wrong-code", "--link", base + "/m/wrongid/secret", "--tries", "6", "--code-cmd", f"cat {code_file}",
                                 "--then-right", "--out", os.path.join(work, "wrong")] + ca, tag)
        if check(rc == 0 and s is not None, f"wrong-code exits 0 ({err.strip()[-300:]})"):
            texts = [t.get("text", "") for t in s["tries"]]
            check(all(f"{4 - i} tries left" in texts[i] for i in range(4)), f"tries 1-4 say how many are left: {texts[:4]}")
            check("locked" in texts[4], "the fifth wrong code locks")
            check(len(texts) == 6 and s["tries"][5].get("stopped") == "no code form", "no sixth try: no code form")
            check("locked" in s["pages"].get("reopened", {}).get("text", ""), "the link page says locked afterwards")
        check(wait_gone(tag, 10), "no Chromium process left after wrong-code")

        # 3b. A link below the fold: scrolled to, tapped, downloaded.
        d = None
        with browser.browser(ca_file=os.path.join(CERTS, "ca.crt"), timeout=20) as b:
            b.navigate(base + "/long")
            d = b.download('a[href$="/a/0"]', os.path.join(work, "long"))
        check(d and d["sha256"] == hashlib.sha256(data).hexdigest(), "a link below the fold is scrolled to and tapped")

        # 4. A certificate from another CA is refused (the driver trusts only --ca).
        tag = uuid.uuid4().hex
        rc, s, err = run_driver(["open", "--link", link, "--out", os.path.join(work, "untrusted"),
                                 "--ca", os.path.join(CERTS, "selfsigned.crt")], tag)
        check(rc == 1 and "ERR_CERT" in err, f"an untrusted portal certificate fails the step ({err.strip()[-200:]})")
        check(wait_gone(tag, 10), "no Chromium process left after a failed step")

        # 5. Stopped or killed mid-flow (waiting for the code): Chromium goes too.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            tag = uuid.uuid4().hex
            stop = os.path.join(work, f"stop-{sig}")
            # The code command carries no tag and ends by itself within 20 s.
            cmd = (f"env -u SR_BROWSER_TEST_TAG sh -c 'for i in $(seq 200); do [ -f {stop} ] && exit 1; "
                   "sleep 0.1; done; exit 1'")
            p = subprocess.Popen([PY, DRIVER, "portal-flow", "--link", f"{base}/m/kill{int(sig)}/secret", "--code-cmd", cmd, "--no-download",
                                  "--out", os.path.join(work, f"killed-{sig}")] + ca,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(os.environ, SR_BROWSER_TEST_TAG=tag))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not os.path.exists(os.path.join(work, f"killed-{sig}", "02-enter-code.png")):
                time.sleep(0.1)
            up = len(tagged_pids(tag)) > 1
            p.send_signal(sig)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            with open(stop, "w"):
                pass
            check(up and wait_gone(tag, 15), f"Chromium is gone after the driver got signal {int(sig)}")
    finally:
        stub.terminate()
        try:
            stub.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stub.kill()
            stub.wait(timeout=5)
        reap()

    # 6. mx-code reads the newest code mail of a recipient from a fake_mx.py record file.
    rec = os.path.join(work, "mx.jsonl")
    mails = [
        ("bob@x.test", "Subject: Secure message from a@b.test\r\n\r\nOpen https://p/m/AAAA/BBBB\r\n"),
        ("bob@x.test", "Subject: Secure message from a@b.test\r\n\r\nOpen https://p/m/AAAA/BB-111111-B\r\n"),
        ("bob@x.test", "Subject: Your code\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nYour code: 123456\r\n"),
        ("eve@x.test", "Subject: Your code\r\n\r\nYour code: 999999\r\n"),
        ("bob@x.test", "Subject: Your code\r\nDate: Mon, 07 Dec 2026 01:02:03 +0000\r\n\r\nYour code is 654321.\r\n"),
    ]
    with open(rec, "w", encoding="utf-8") as f:
        for rcpt, body in mails:
            f.write(json.dumps({"rcpts": [rcpt], "data": body}) + "\n")
    check(browser.code_from_mx(rec, "bob@x.test") == "654321", "mx-code: the newest code of bob")
    check(browser.code_from_mx(rec, "bob@x.test", skip=1) == "123456", "mx-code: skip=1 gives the older one")
    check(browser.code_from_mx(rec, "nobody@x.test") is None, "mx-code: none for an unknown recipient")

    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
