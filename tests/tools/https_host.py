#!/usr/bin/python3
# https_host: a scriptable HTTPS server for sealrelay's HTTPS client, MTA-STS and TLS-RPT
# tests and benchmarks. Serves canned responses per (Host, path) over TLS with certificates
# chosen by SNI, misbehaves on request (redirects, oversized or chunked bodies, silence),
# and records every request it reads as one JSON line. Prints "ready PORT" on stdout once
# every listener is bound; exits 0 on SIGTERM/SIGINT.
# Python 3.11 standard library only. Loopback addresses only (refuses anything else).
import argparse
import base64
import http
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
MAX_HEAD = 16384
MAX_BODY = 16 * 1024 * 1024
STS_PATH = "/.well-known/mta-sts.txt"


def parse_listen(text):
    m = re.fullmatch(r"\[?([0-9a-fA-F:.]+)\]?:([0-9]+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad --listen {text!r} (HOST:PORT)")
    host, port = m.group(1), int(m.group(2))
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"--listen {host}: loopback addresses only")
    return host, port


def parse_cert(text):
    """[NAME[,NAME...]=]CRT:KEY -> (names, crt, key); no names = the default certificate."""
    names = []
    if "=" in text:
        n, text = text.split("=", 1)
        names = [x.strip().lower() for x in n.split(",") if x.strip()]
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"bad --cert {text!r} ([NAMES=]CRT:KEY)")
    crt, key = text.rsplit(":", 1)
    return names, crt, key


def parse_route(text):
    """[HOST]PATH=STATUS[:CONTENT_TYPE]:FILE -> route dict (FILE '-' = empty body)."""
    m = re.fullmatch(r"([^/=]*)(/[^=]*)=([0-9]{3})(?::([^:]*))?:(.*)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad --route {text!r} ([HOST]PATH=STATUS[:CONTENT_TYPE]:FILE)")
    r = {"path": m.group(2), "status": int(m.group(3))}
    if m.group(1):
        r["host"] = m.group(1)
    if m.group(4):
        r["content_type"] = m.group(4)
    if m.group(5) and m.group(5) != "-":
        r["body_file"] = m.group(5)
    return r


def cert_names(crt):
    """The DNS names of a certificate's subjectAltName (lower case)."""
    try:
        info = ssl._ssl._test_decode_cert(crt)   # CPython's own PEM decoder (no public API)
    except (AttributeError, ssl.SSLError, OSError):
        return []
    return [v.lower() for k, v in info.get("subjectAltName", ()) if k == "DNS"]


class host_server:
    def __init__(self, o):
        self.o = o
        self.lock = threading.Lock()
        self.record_fd = os.open(o.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if o.record else None
        self.conn_count = 0
        self.routes = {}        # (host or "*", path) -> route dict
        self.policy_dir = o.policy_dir
        certs = list(o.cert)
        if o.config:
            with open(o.config, encoding="utf-8") as f:
                cfg = json.load(f)
            for c in cfg.get("certs", ()):
                certs.append(([n.lower() for n in c.get("names", ())], c["crt"], c["key"]))
            for r in cfg.get("routes", ()):
                self.add_route(r)
            if cfg.get("policy_dir") and not self.policy_dir:
                self.policy_dir = cfg["policy_dir"]
        for r in o.route:
            self.add_route(r)
        if not certs:
            raise SystemExit("https_host: no certificate (--cert or config certs)")
        self.default_ctx = None
        self.by_name = {}       # exact name -> context
        self.by_wild = {}       # "sts.test" for "*.sts.test" -> context
        cache = {}
        for names, crt, key in certs:
            ctx = cache.get((crt, key))
            if ctx is None:
                ctx = cache[(crt, key)] = self.context(crt, key)
            if self.default_ctx is None:
                self.default_ctx = ctx    # the first certificate answers unknown names
            if not names:
                names = cert_names(crt)
            for n in names:
                if n.startswith("*."):
                    self.by_wild.setdefault(n[2:], ctx)
                else:
                    self.by_name.setdefault(n, ctx)
        self.default_ctx.sni_callback = self.pick
        for ctx in cache.values():
            ctx.sni_callback = self.pick

    def context(self, crt, key):
        o = self.o
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        old = any(v in ("1.0", "1.1") for v in (o.tls_min, o.tls_max))
        if old:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")   # OpenSSL 3 refuses TLS < 1.2 above level 0
        ctx.minimum_version = TLS_VERSIONS[o.tls_min] if o.tls_min else ssl.TLSVersion.MINIMUM_SUPPORTED
        if o.tls_max:
            ctx.maximum_version = TLS_VERSIONS[o.tls_max]
        return ctx

    def pick(self, sslobj, name, ctx):
        if not name:
            return None
        name = name.lower()
        try:
            sslobj.sr_sni = name   # for the request record
        except AttributeError:
            pass
        c = self.by_name.get(name)
        if c is None and "." in name:
            c = self.by_wild.get(name.split(".", 1)[1])
        if c is not None and c is not sslobj.context:
            sslobj.context = c
        return None

    def add_route(self, r):
        if "path" not in r:
            raise SystemExit(f"https_host: route without a path: {r!r}")
        self.routes[(r.get("host", "*").lower(), r["path"])] = r

    def find_route(self, host, path):
        r = self.routes.get((host, path)) or self.routes.get(("*", path))
        if r is None and self.policy_dir and path == STS_PATH and host.startswith("mta-sts."):
            f = os.path.join(self.policy_dir, host[len("mta-sts."):] + ".txt")
            if "/" not in host and os.path.isfile(f):
                r = {"status": 200, "content_type": "text/plain", "body_file": f}
        return r

    def write_line(self, obj):
        if self.record_fd is None:
            return
        line = (json.dumps(obj, ensure_ascii=True) + "\n").encode()
        with self.lock:
            os.write(self.record_fd, line)

    def serve(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(1024)
        threading.Thread(target=self.accept_loop, args=(ls, f"{host}:{ls.getsockname()[1]}"), daemon=True).start()
        return ls.getsockname()[1]

    def accept_loop(self, ls, where):
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                continue
            with self.lock:
                self.conn_count += 1
                n = self.conn_count
            threading.Thread(target=self.handle, args=(s, where, n), daemon=True).start()

    def handle(self, raw, where, n):
        try:
            raw.settimeout(self.o.io_timeout)
            if self.o.silent:
                self.hold(raw)
                return
            try:
                s = self.default_ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.log(f"conn {n}: handshake failed: {e}")
                return
            try:
                self.exchange(s, where, n)
            finally:
                try:
                    s.close()
                except OSError:
                    pass
        finally:
            try:
                raw.close()
            except OSError:
                pass

    def hold(self, s):
        """Send nothing; wait until the peer closes (bounded by --io-timeout)."""
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass

    def log(self, text):
        print(f"https_host: {text}", file=sys.stderr, flush=True)

    def read_request(self, s):
        buf = b""
        while b"\r\n\r\n" not in buf:
            got = s.recv(4096)
            if not got:
                return None
            buf += got
            if len(buf) > MAX_HEAD:
                return None
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        headers = []
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                headers.append([k.strip(), v.strip()])
        hmap = {k.lower(): v for k, v in headers}
        body = rest
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            body, data = b"", rest
            while True:
                while b"\r\n" not in data:
                    got = s.recv(4096)
                    if not got:
                        return None
                    data += got
                size_line, data = data.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(data) < size + 2:
                    got = s.recv(4096)
                    if not got:
                        return None
                    data += got
                body += data[:size]
                data = data[size + 2:]
                if size == 0:
                    break
        else:
            length = int(hmap.get("content-length", "0") or 0)
            if length > MAX_BODY:
                return None
            while len(body) < length:
                got = s.recv(65536)
                if not got:
                    return None
                body += got
            body = body[:length]
        return parts[0], parts[1], headers, hmap, body

    def exchange(self, s, where, n):
        req = self.read_request(s)
        if req is None:
            return
        method, target, headers, hmap, body = req
        path = target.split("?", 1)[0]
        host = hmap.get("host", "")
        sni = getattr(s, "sr_sni", "")
        host = re.sub(r":[0-9]+$", "", host).lower() or sni
        self.write_line({
            "ts": time.time(), "listener": where, "conn": n, "method": method, "path": target,
            "host": host, "sni": sni, "tls_version": s.version() or "",
            "headers": headers, "body_b64": base64.b64encode(body).decode("ascii"),
        })
        r = self.find_route(host, path)
        if r is None:
            self.respond(s, {"status": 404, "content_type": "text/plain", "body": "not found\n"})
            return
        self.respond(s, r)

    def respond(self, s, r):
        if r.get("delay"):
            time.sleep(float(r["delay"]))
        if r.get("silent"):
            self.hold(s)
            return
        status = int(r.get("status", 200))
        if "size" in r:
            body = b"x" * int(r["size"])
        elif "body_file" in r:
            with open(r["body_file"], "rb") as f:
                body = f.read()
        else:
            body = r.get("body", "").encode()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        head = [f"HTTP/1.1 {status} {r.get('reason', phrase)}"]
        if r.get("content_type"):
            head.append(f"Content-Type: {r['content_type']}")
        if r.get("location"):
            head.append(f"Location: {r['location']}")
        for k, v in r.get("headers", {}).items():
            head.append(f"{k}: {v}")
        chunked = r.get("chunked", False)
        if chunked:
            head.append("Transfer-Encoding: chunked")
        elif not r.get("no_length"):
            head.append(f"Content-Length: {len(body)}")
        head.append("Connection: close")
        out = ("\r\n".join(head) + "\r\n\r\n").encode()
        if chunked:
            step = max(1, int(r.get("chunk_size", 100)))
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            out += b"0\r\n\r\n"
        else:
            out += body
        try:
            s.sendall(out)
            if hasattr(s, "unwrap") and not r.get("no_close_notify"):
                s.unwrap()
        except (OSError, ValueError):
            pass


def main(argv=None):
    p = argparse.ArgumentParser(description="Scriptable HTTPS host for sealrelay tests (loopback only).")
    p.add_argument("--listen", action="append", type=parse_listen, required=True,
                   help="HOST:PORT (repeatable; loopback only; port 0 = pick one, shared by every listener)")
    p.add_argument("--cert", action="append", type=parse_cert, default=[], metavar="[NAMES=]CRT:KEY",
                   help="certificate chosen by SNI for NAMES (comma-separated, '*.x' wildcards; default: its DNS subjectAltNames); "
                        "the first one also answers unknown names")
    p.add_argument("--route", action="append", type=parse_route, default=[],
                   metavar="[HOST]PATH=STATUS[:CONTENT_TYPE]:FILE", help="a canned response (FILE '-' = empty body)")
    p.add_argument("--config", help="JSON: {certs: [{names, crt, key}], routes: [{host, path, status, ...}], policy_dir}")
    p.add_argument("--policy-dir", help=f"serve DIR/<domain>.txt as text/plain at mta-sts.<domain>{STS_PATH}")
    p.add_argument("--record", help="append one JSON line per request read to FILE")
    p.add_argument("--tls-min", choices=sorted(TLS_VERSIONS), help="lowest TLS version accepted")
    p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS), help="highest TLS version accepted")
    p.add_argument("--silent", action="store_true", help="accept TCP connections and never send a byte")
    p.add_argument("--io-timeout", type=float, default=30.0, help="seconds a connection may stay idle")
    o = p.parse_args(argv)

    srv = host_server(o)

    def stop(signum, frame):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = 0
    for host, want in o.listen:
        port = srv.serve(host, want or port)
    print(f"ready {port}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
