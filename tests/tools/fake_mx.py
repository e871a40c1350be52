#!/usr/bin/python3
# fake_mx: a scriptable, misbehaving SMTP server for sealrelay's delivery and policy tests.
# Listens on one or more loopback addresses, speaks ESMTP (PIPELINING, SIZE, 8BITMIME, REQUIRETLS,
# STARTTLS through Python's OpenSSL or, for suites Debian's OpenSSL lacks such as 3DES,
# through libwolfssl via ctypes), and records every DATA transaction as one JSON line.
# Prints "ready" on stdout once every listener is bound; exits 0 on SIGTERM/SIGINT.
# Python 3.11 standard library only. Loopback addresses only (refuses anything else).
import argparse
import ctypes
import ctypes.util
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

# TLS 1.0/1.1 are the point of some peers: silence Python's deprecation notes about them.
warnings.filterwarnings("ignore", category=DeprecationWarning)

STAGES = ("greeting", "ehlo", "helo", "starttls", "mail", "rcpt", "data", "dot", "rset", "quit")
TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
MAX_LINE = 4096


class reply_rule:
    """One --reply STAGE=CODE[:TEXT][xN] rule: answer CODE instead of the normal reply,
    the first N times process-wide (always when N is absent). CODE 'close' drops the
    connection without replying."""

    def __init__(self, spec):
        m = re.fullmatch(r"([a-z]+)=(close|[2-5][0-9][0-9])(?::(.*?))?(?:x([0-9]+))?", spec)
        if not m or m.group(1) not in STAGES:
            raise argparse.ArgumentTypeError(f"bad --reply {spec!r} (STAGE=CODE[:TEXT][xN], stages {', '.join(STAGES)})")
        self.stage = m.group(1)
        self.code = m.group(2)
        self.text = m.group(3)
        self.remaining = int(m.group(4)) if m.group(4) else None
        self.lock = threading.Lock()

    def take(self):
        """Return (code, text) when this rule applies now, consuming one use; else None."""
        with self.lock:
            if self.remaining is not None:
                if self.remaining <= 0:
                    return None
                self.remaining -= 1
            return self.code, self.text


class rcpt_rule(reply_rule):
    """--rcpt-reply ADDRESS=CODE[:TEXT][xN]: a reply for one recipient address only."""

    def __init__(self, spec):
        addr, sep, rest = spec.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"bad --rcpt-reply {spec!r} (ADDRESS=CODE[:TEXT][xN])")
        super().__init__("rcpt=" + rest)
        self.address = addr.strip("<>").lower()


def reply_lines(code, text):
    """CODE TEXT as sent: a literal backslash-n in TEXT (as a rule gives it) splits it into
    the lines of a multi-line reply, "CODE-first\r\n...CODE last\r\n" (Gmail's 421-4.7.28)."""
    lines = text.split("\\n")
    return "".join(f"{code}-{l}\r\n" for l in lines[:-1]) + f"{code} {lines[-1]}\r\n"


def default_text(code):
    c = int(code)
    if c >= 500:
        return f"5.0.0 fake_mx: rejected ({c})"
    if c >= 400:
        return f"4.0.0 fake_mx: try again later ({c})"
    return "2.0.0 Ok"


def parse_delay(spec):
    stage, sep, secs = spec.partition("=")
    if not sep or stage not in STAGES:
        raise argparse.ArgumentTypeError(f"bad --delay {spec!r} (STAGE=SECONDS)")
    return stage, float(secs)


def parse_listen(spec):
    host, sep, port = spec.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"bad --listen {spec!r} (HOST:PORT)")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"--listen {spec}: loopback addresses only")
    return host, int(port)


# ------------------------------------------------------------------------------ wolfSSL
class wolfssl_backend:
    """Server-side TLS over a blocking socket through Debian's libwolfssl (ctypes). Used
    for cipher suites Debian's OpenSSL no longer builds (3DES, RC4). TLS 1.1..1.3."""

    SSL_SUCCESS = 1

    def __init__(self, cert, key, ciphers, tls_min, tls_max):
        path = ctypes.util.find_library("wolfssl") or "libwolfssl.so.35"
        w = ctypes.CDLL(path)
        self.w = w
        for name, res, args in (
            ("wolfSSL_Init", ctypes.c_int, []),
            ("wolfSSLv23_server_method", ctypes.c_void_p, []),
            ("wolfTLSv1_1_server_method", ctypes.c_void_p, []),
            ("wolfTLSv1_2_server_method", ctypes.c_void_p, []),
            ("wolfTLSv1_3_server_method", ctypes.c_void_p, []),
            ("wolfSSL_CTX_new", ctypes.c_void_p, [ctypes.c_void_p]),
            ("wolfSSL_CTX_use_certificate_chain_file", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
            ("wolfSSL_CTX_use_PrivateKey_file", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]),
            ("wolfSSL_CTX_set_cipher_list", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
            ("wolfSSL_CTX_SetMinVersion", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
            ("wolfSSL_new", ctypes.c_void_p, [ctypes.c_void_p]),
            ("wolfSSL_set_fd", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
            ("wolfSSL_accept", ctypes.c_int, [ctypes.c_void_p]),
            ("wolfSSL_get_error", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
            ("wolfSSL_read", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]),
            ("wolfSSL_write", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]),
            ("wolfSSL_get_version", ctypes.c_char_p, [ctypes.c_void_p]),
            ("wolfSSL_get_current_cipher", ctypes.c_void_p, [ctypes.c_void_p]),
            ("wolfSSL_CIPHER_get_name", ctypes.c_char_p, [ctypes.c_void_p]),
            ("wolfSSL_CIPHER_get_bits", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
            ("wolfSSL_shutdown", ctypes.c_int, [ctypes.c_void_p]),
            ("wolfSSL_session_reused", ctypes.c_int, [ctypes.c_void_p]),
            ("wolfSSL_free", None, [ctypes.c_void_p]),
        ):
            f = getattr(w, name)
            f.restype = res
            f.argtypes = args
        w.wolfSSL_Init()
        lo, hi = tls_min or "1.1", tls_max or "1.3"
        if lo == "1.0" or hi == "1.0":
            raise SystemExit("fake_mx: Debian's wolfSSL is built without TLS 1.0 (no WOLFSSL_ALLOW_TLSV10); use the OpenSSL backend")
        if lo == hi:
            method = {"1.1": w.wolfTLSv1_1_server_method, "1.2": w.wolfTLSv1_2_server_method,
                      "1.3": w.wolfTLSv1_3_server_method}[lo]()
        elif hi == "1.3":
            method = w.wolfSSLv23_server_method()
        elif hi == "1.2":
            method = w.wolfTLSv1_2_server_method()   # accepts a downgrade to 1.1
        else:
            method = w.wolfTLSv1_1_server_method()
        self.ctx = w.wolfSSL_CTX_new(method)
        if not self.ctx:
            raise SystemExit("fake_mx: wolfSSL_CTX_new failed")
        if lo != hi:
            w.wolfSSL_CTX_SetMinVersion(self.ctx, {"1.1": 2, "1.2": 3, "1.3": 4}[lo])
        if w.wolfSSL_CTX_use_certificate_chain_file(self.ctx, cert.encode()) != 1:
            raise SystemExit(f"fake_mx: wolfSSL cannot load {cert}")
        if w.wolfSSL_CTX_use_PrivateKey_file(self.ctx, key.encode(), 1) != 1:   # 1 = PEM
            raise SystemExit(f"fake_mx: wolfSSL cannot load {key}")
        if ciphers and w.wolfSSL_CTX_set_cipher_list(self.ctx, ciphers.encode()) != 1:
            raise SystemExit(f"fake_mx: wolfSSL rejects cipher list {ciphers!r}")

    def wrap(self, sock):
        ssl_ = self.w.wolfSSL_new(self.ctx)
        self.w.wolfSSL_set_fd(ssl_, sock.fileno())
        if self.w.wolfSSL_accept(ssl_) != 1:
            err = self.w.wolfSSL_get_error(ssl_, 0)
            self.w.wolfSSL_free(ssl_)
            raise OSError(f"wolfSSL_accept failed: error {err}")
        return wolfssl_stream(self.w, ssl_, sock)


class wolfssl_stream:
    """The small socket-like surface the session uses: recv, sendall, close, info()."""

    def __init__(self, w, ssl_, sock):
        self.w, self.ssl, self.sock = w, ssl_, sock
        self.buf = ctypes.create_string_buffer(16384)

    def recv(self, n):
        got = self.w.wolfSSL_read(self.ssl, self.buf, min(n, len(self.buf)))
        if got <= 0:
            return b""
        return self.buf.raw[:got]

    def sendall(self, data):
        while data:
            sent = self.w.wolfSSL_write(self.ssl, data, len(data))
            if sent <= 0:
                raise OSError("wolfSSL_write failed")
            data = data[sent:]

    def info(self):
        c = self.w.wolfSSL_get_current_cipher(self.ssl)
        name = self.w.wolfSSL_CIPHER_get_name(c).decode()
        bits = self.w.wolfSSL_CIPHER_get_bits(c, None)
        if "DES-CBC3" in name:
            bits = 112   # wolfSSL reports 3DES's 192 key bits; its strength is 112 (NIST SP 800-57)
        version = self.w.wolfSSL_get_version(self.ssl).decode()
        return version, name, bits

    def resumed(self):
        return bool(self.w.wolfSSL_session_reused(self.ssl))

    def close(self):
        if self.ssl:
            self.w.wolfSSL_shutdown(self.ssl)
            self.w.wolfSSL_free(self.ssl)
            self.ssl = None
        self.sock.close()


class openssl_stream:
    def __init__(self, s):
        self.s = s

    def recv(self, n):
        return self.s.recv(n)

    def sendall(self, data):
        self.s.sendall(data)

    def info(self):
        name, _, bits = self.s.cipher()
        return self.s.version(), name, bits

    def resumed(self):
        return self.s.session_reused

    def close(self):
        self.s.close()


# ------------------------------------------------------------------------------ server
class server:
    def __init__(self, opts):
        self.o = opts
        self.conn_count = 0
        self.lock = threading.Lock()
        self.record_fd = None
        self.sessions_fd = None
        if opts.record:
            self.record_fd = os.open(opts.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if opts.sessions:
            self.sessions_fd = os.open(opts.sessions, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.rules = {}
        for r in opts.reply:
            self.rules.setdefault(r.stage, []).append(r)
        if opts.starttls_reply:
            code, _, text = opts.starttls_reply.partition(" ")
            self.rules.setdefault("starttls", []).insert(0, reply_rule(f"starttls={code}:{text}"))
        self.delays = dict(opts.delay)
        self.tls = None
        self.wolf = None
        if opts.cert and not opts.no_starttls:
            if opts.tls_backend == "wolfssl":
                self.wolf = wolfssl_backend(opts.cert, opts.key, opts.ciphers, opts.tls_min, opts.tls_max)
            else:
                self.tls = self.openssl_context()

    def openssl_context(self):
        o = self.o
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(o.cert, o.key)
        old = any(v in ("1.0", "1.1") for v in (o.tls_min, o.tls_max))
        # OpenSSL 3 refuses TLS < 1.2 (SHA-1 signatures) above security level 0.
        ciphers = o.ciphers or ("DEFAULT:@SECLEVEL=0" if old or o.tls_min is None else None)
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.minimum_version = TLS_VERSIONS[o.tls_min] if o.tls_min else ssl.TLSVersion.MINIMUM_SUPPORTED
        if o.tls_max:
            ctx.maximum_version = TLS_VERSIONS[o.tls_max]
        return ctx

    def next_conn(self):
        with self.lock:
            self.conn_count += 1
            return self.conn_count

    def write_line(self, fd, obj):
        if fd is None:
            return
        line = (json.dumps(obj, ensure_ascii=True) + "\n").encode()
        with self.lock:
            os.write(fd, line)   # one write per line: a reader never sees half of it

    def rule(self, stage):
        for r in self.rules.get(stage, ()):
            got = r.take()
            if got:
                return got
        return None

    def serve(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(128)
        name = f"{host}:{port}" if fam == socket.AF_INET else f"[{host}]:{port}"

        def loop():
            while True:
                s, peer = ls.accept()
                opened = time.time()   # taken here, not in the thread: a thread may start late
                threading.Thread(target=self.handle, args=(s, name, peer[0], opened), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()

    def handle(self, s, mx, peer, opened):
        n = self.next_conn()
        sess = session(self, s, mx, n)
        sess.peer = peer   # the client's address: which source address the relay bound
        sess.opened = opened
        try:
            sess.run()
        except (OSError, ssl.SSLError, ConnectionError) as e:
            sess.events.append(f"error: {e}")
        finally:
            sess.close()
            self.write_line(self.sessions_fd, sess.summary())


class session:
    def __init__(self, srv, sock, mx, conn):
        self.srv, self.o = srv, srv.o
        self.raw = sock
        self.stream = sock           # plain socket, then the TLS stream
        self.mx, self.conn = mx, conn
        self.peer = None
        self.opened = None           # accept() returned (unix seconds)
        self.closed = None           # QUIT arrived, else the connection ended (unix seconds)
        self.buf = bytearray()  # appended per recv: bytes would copy the whole buffer each time
        self.tls = False
        self.tls_version = self.cipher = None
        self.cipher_bits = 0
        self.tls_error = None
        self.tls_resumed = False     # the handshake resumed an earlier session (ticket)
        self.helo = None
        self.commands = []           # every command line, in order, with "tls" mark
        self.events = []
        self.starttls_offered = False
        self.injection = False
        self.reset()

    def reset(self):
        self.mail_from = None
        self.mail_params = []
        self.rcpts = []

    # -- io
    def send(self, text):
        self.stream.sendall(text.encode())

    def reply(self, stage, code, text, lines=None):
        """Send CODE TEXT (or a multi-line reply) unless a rule for `stage` overrides it.
        Returns the code actually sent, or None when the connection was dropped."""
        d = self.srv.delays.get(stage)
        if d:
            time.sleep(d)
        r = self.srv.rule(stage)
        if r:
            code, text = r
            if code == "close":
                self.events.append(f"{stage}: closed by rule")
                raise ConnectionAbortedError("closed by rule")
            text = text or default_text(code)
            lines = None
        code = str(code)
        if lines:
            out = "".join(f"{code}-{l}\r\n" for l in lines[:-1]) + f"{code} {lines[-1]}\r\n"
        else:
            out = reply_lines(code, text)
        self.send(out)
        return int(code)

    def fill(self):
        chunk = self.stream.recv(65536)
        if not chunk:
            raise ConnectionResetError("peer closed")
        self.buf += chunk

    def read_line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 1], self.buf[i + 1 :]
                return line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if len(self.buf) > MAX_LINE:
                raise ConnectionAbortedError("line too long")
            self.fill()

    def read_data(self):
        """Read a DATA body up to CRLF.CRLF; return (unstuffed bytes, bare_lf, bare_cr, raw size)."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end, body = 0, b""
                self.buf = self.buf[3:]
                break
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                body = self.buf[: i + 2]
                self.buf = self.buf[i + 5 :]
                break
            start = max(0, len(self.buf) - 4)
            self.fill()
        bare_lf = re.search(rb"(?<!\r)\n", body) is not None
        bare_cr = re.search(rb"\r(?!\n)", body) is not None
        lines = body.split(b"\r\n")
        unstuffed = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
        return unstuffed, bare_lf, bare_cr, len(body)

    # -- protocol
    def ehlo_lines(self):
        o = self.o
        lines = [f"{o.hostname} fake_mx at your service"]
        if not o.no_pipelining:
            lines.append("PIPELINING")
        lines.append(f"SIZE {o.size}")
        lines.append("8BITMIME")
        lines.append("ENHANCEDSTATUSCODES")
        if self.offer_starttls():
            lines.append("STARTTLS")
            self.starttls_offered = True
        if o.requiretls and self.tls:
            lines.append("REQUIRETLS")  # RFC 8689: only once the session is encrypted
        return lines

    def offer_starttls(self):
        o = self.o
        if self.tls or o.no_starttls or not (self.srv.tls or self.srv.wolf):
            return False
        if o.strip_starttls_after is not None and self.conn > o.strip_starttls_after:
            return False
        return True

    def run(self):
        o = self.o
        if o.silent:
            self.events.append("silent")
            while self.raw.recv(65536):
                pass
            return
        self.greeting_code = self.reply("greeting", 220, f"{o.hostname} ESMTP fake_mx")
        refused = self.greeting_code >= 400
        if self.greeting_code >= 421 and self.greeting_code < 500:
            return
        while True:
            line = self.read_line()
            self.commands.append(("TLS " if self.tls else "") + line)
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                # The client counts the connection closed once it has our 221: stamping
                # before we send it keeps "closed" before any connection the client opens
                # next (tests compute concurrent connections from opened/closed).
                self.closed = time.time()
                self.reply("quit", 221, "2.0.0 Bye")
                return
            if refused:
                self.send("503 5.5.1 No service\r\n")
                continue
            if verb in ("EHLO", "HELO"):
                self.helo = arg.strip()
                self.reset()
                if verb == "EHLO":
                    self.reply("ehlo", 250, None, self.ehlo_lines())
                else:
                    self.reply("helo", 250, f"{o.hostname}")
            elif verb == "STARTTLS":
                self.do_starttls()
            elif verb == "MAIL":
                self.do_mail(arg)
            elif verb == "RCPT":
                self.do_rcpt(arg)
            elif verb == "DATA":
                self.do_data()
            elif verb == "RSET":
                self.reset()
                self.reply("rset", 250, "2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok\r\n")
            elif verb == "VRFY":
                self.send("252 2.5.2 Cannot VRFY\r\n")
            else:
                self.send("502 5.5.2 Command not recognized\r\n")

    def do_starttls(self):
        if self.tls:
            self.send("503 5.5.1 TLS already active\r\n")
            return
        offered = self.offer_starttls()
        if not offered and not self.srv.rules.get("starttls"):
            self.send("502 5.5.1 STARTTLS not available\r\n")
            return
        code = self.reply("starttls", 220, "2.0.0 Ready to start TLS")
        if code != 220:
            return
        if self.buf:
            # Plaintext pipelined after STARTTLS must be discarded (CVE-2011-0411 class).
            self.injection = True
            self.events.append(f"discarded {len(self.buf)} bytes sent after STARTTLS")
            self.buf = bytearray()
        if self.o.tls_abort:
            self.raw.settimeout(2)
            try:
                hello = self.raw.recv(65536)
                self.events.append(f"tls-abort after {len(hello)} bytes of ClientHello")
            except OSError:
                pass
            # RST instead of FIN: the client sees the handshake cut off.
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raise ConnectionAbortedError("tls-abort")
        self.raw.settimeout(30)
        try:
            if self.srv.wolf:
                # wolfSSL does its own blocking I/O on the fd: Python's timeout mode
                # would leave the fd non-blocking and every read would be WANT_READ.
                self.raw.settimeout(None)
                self.stream = self.srv.wolf.wrap(self.raw)
            else:
                # wrap_socket detaches the plain socket: keep the TLS one as raw too.
                self.raw = self.srv.tls.wrap_socket(self.raw, server_side=True)
                self.stream = openssl_stream(self.raw)
        except (ssl.SSLError, OSError) as e:
            self.tls_error = str(e)
            raise
        self.raw.settimeout(None)
        self.tls = True
        self.tls_version, self.cipher, self.cipher_bits = self.stream.info()
        self.tls_resumed = self.stream.resumed()
        self.helo = None
        self.reset()

    def do_mail(self, arg):
        m = re.match(r"(?i)FROM:\s*<([^>]*)>\s*(.*)", arg)
        if not m:
            self.send("501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        if self.mail_from is not None:
            self.send("503 5.5.1 Nested MAIL command\r\n")
            return
        params = m.group(2).split()
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "REQUIRETLS" and not (self.o.requiretls and self.tls):
                # What a server without the extension (or before TLS) answers.
                self.send("555 5.5.4 Unsupported option: REQUIRETLS\r\n")
                return
            if k.upper() == "SIZE" and v.isdigit() and int(v) > self.o.size:
                self.send("552 5.3.4 Message size exceeds fixed limit\r\n")
                return
        if self.reply("mail", 250, "2.1.0 Ok") == 250:
            self.mail_from = m.group(1)
            self.mail_params = params

    def do_rcpt(self, arg):
        m = re.match(r"(?i)TO:\s*<([^>]*)>", arg)
        if not m:
            self.send("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        if self.mail_from is None:
            self.send("503 5.5.1 Need MAIL first\r\n")
            return
        addr = m.group(1)
        for r in self.o.rcpt_reply:
            if r.address == addr.lower():
                got = r.take()
                if got:
                    code, text = got
                    if code == "close":
                        raise ConnectionAbortedError("closed by rule")
                    self.send(reply_lines(code, text or default_text(code)))
                    if int(code) == 250:
                        self.rcpts.append(addr)
                    return
        if self.reply("rcpt", 250, "2.1.5 Ok") == 250:
            self.rcpts.append(addr)

    def do_data(self):
        if self.mail_from is None or not self.rcpts:
            self.send("503 5.5.1 Need MAIL and RCPT first\r\n")
            return
        if self.reply("data", 354, "End data with <CR><LF>.<CR><LF>") != 354:
            return
        body, bare_lf, bare_cr, size = self.read_data()
        dropped = None
        try:
            if size > self.o.size:
                code = self.reply("dot", 552, "5.3.4 Message too big")
            else:
                code = self.reply("dot", 250, f"2.0.0 Ok: queued as fake{self.conn}x{len(self.commands)}")
        except ConnectionAbortedError as e:
            code, dropped = 0, e   # recorded as not accepted: the sender never saw a reply
        self.srv.write_line(self.srv.record_fd, {
            "mx": self.mx,
            "conn": self.conn,
            "peer": self.peer,
            "helo": self.helo,
            "mail_from": self.mail_from,
            "mail_params": self.mail_params,
            "rcpts": self.rcpts,
            "data": body.decode("utf-8", "surrogateescape"),
            "size": len(body),
            "tls": self.tls,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "cipher_bits": self.cipher_bits,
            "bare_lf": bare_lf,
            "bare_cr": bare_cr,
            "accepted": code == 250,
            "reply": code,
            "ts": time.time(),
        })
        if dropped:
            raise dropped
        self.reset()

    def summary(self):
        return {
            "mx": self.mx,
            "conn": self.conn,
            "peer": self.peer,
            "helo": self.helo,
            "tls": self.tls,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "cipher_bits": self.cipher_bits,
            "tls_error": self.tls_error,
            "tls_resumed": self.tls_resumed,
            "starttls_offered": self.starttls_offered,
            "starttls_injection": self.injection,
            "commands": self.commands,
            "events": self.events,
            "opened": self.opened,
            "closed": self.closed if self.closed is not None else time.time(),
            "ts": time.time(),
        }

    def close(self):
        try:
            self.stream.close()
        except OSError:
            pass
        try:
            self.raw.close()
        except OSError:
            pass


def main(argv=None):
    p = argparse.ArgumentParser(description="Misbehaving fake MX for sealrelay tests (loopback only).")
    p.add_argument("--listen", action="append", type=parse_listen, required=True,
                   help="HOST:PORT to listen on (repeatable; loopback only)")
    p.add_argument("--record", help="append one JSON line per DATA transaction to FILE")
    p.add_argument("--sessions", help="append one JSON line per connection (commands in order) to FILE")
    p.add_argument("--hostname", default="mx.test", help="name in the greeting and EHLO reply")
    p.add_argument("--cert", help="PEM certificate chain (enables STARTTLS)")
    p.add_argument("--key", help="PEM private key")
    p.add_argument("--no-starttls", action="store_true", help="never advertise or accept STARTTLS")
    p.add_argument("--starttls-reply", help='reply to STARTTLS instead of 220, e.g. "454 4.7.0 TLS not available"')
    p.add_argument("--tls-abort", action="store_true", help="reply 220 to STARTTLS, read the ClientHello, then reset the connection")
    p.add_argument("--tls-min", choices=sorted(TLS_VERSIONS), help="lowest TLS version accepted")
    p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS), help="highest TLS version accepted")
    p.add_argument("--ciphers", help="cipher list (OpenSSL syntax; TLS <= 1.2 suites only)")
    p.add_argument("--tls-backend", choices=("openssl", "wolfssl"), default="openssl",
                   help="TLS server library: Python's OpenSSL, or libwolfssl via ctypes (has 3DES/RC4, no TLS 1.0)")
    p.add_argument("--strip-starttls-after", type=int, metavar="N",
                   help="advertise STARTTLS on the first N connections only (downgrade)")
    p.add_argument("--reply", action="append", type=reply_rule, default=[], metavar="STAGE=CODE[:TEXT][xN]",
                   help=f"override a reply; stages: {', '.join(STAGES)}; CODE 'close' drops the connection; "
                        "a literal \\n in TEXT starts another line of a multi-line reply")
    p.add_argument("--rcpt-reply", action="append", type=rcpt_rule, default=[], metavar="ADDR=CODE[:TEXT][xN]",
                   help="override the RCPT reply for one address")
    p.add_argument("--delay", action="append", type=parse_delay, default=[], metavar="STAGE=SECONDS",
                   help="wait before sending that stage's reply")
    p.add_argument("--silent", action="store_true", help="accept connections and never send a byte")
    p.add_argument("--size", type=int, default=50 * 1024 * 1024, help="SIZE advertised and enforced")
    p.add_argument("--no-pipelining", action="store_true", help="do not advertise PIPELINING")
    p.add_argument("--requiretls", action="store_true",
                   help="advertise REQUIRETLS after STARTTLS and accept MAIL ... REQUIRETLS (RFC 8689)")
    o = p.parse_args(argv)
    if (o.cert is None) != (o.key is None):
        p.error("--cert and --key go together")
    if o.tls_backend == "wolfssl" and o.ciphers and "@SECLEVEL" in o.ciphers:
        p.error("@SECLEVEL is OpenSSL syntax; wolfSSL takes a plain suite list")

    srv = server(o)

    def stop(signum, frame):
        sys.stdout.flush()
        os._exit(0)   # daemon threads die with us; the record is already written per line

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for host, port in o.listen:
        srv.serve(host, port)
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
