#!/usr/bin/env python3
"""Write the seed corpora of the issue-12 fuzz targets (dns, spool, sidecar, tlsrpt, json,
https, headers, auth) into
tests/fuzz/corpus-<name>/ with the Python standard library only (no dnslib on the box):
DNS answers built with struct, spool segments with the record format of spool/record.hh
(CRC32C computed here), sidecar frames as fallback/protocol.hh lays them out. Run it again
after a format change; the files are committed, so tools/test does not need it."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus-" + target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- DNS (dns_fuzz.cc)
# Input: byte 0 = index into types[] (MX A AAAA TLSA TXT CNAME SOA 99), byte 1 = index into
# names[] (example.com, mx.example.com, _mta-sts.example.com, _smtp._tls.example.com,
# _25._tcp.mx.example.com, a.b); the rest is the packet.
T = {"MX": (0, 15), "A": (1, 1), "AAAA": (2, 28), "TLSA": (3, 52), "TXT": (4, 16), "CNAME": (5, 5), "SOA": (6, 6)}
NAMES = ["example.com", "mx.example.com", "_mta-sts.example.com", "_smtp._tls.example.com",
         "_25._tcp.mx.example.com", "a.b"]


def dname(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(owner, rtype, ttl, rdata, compressed_owner=None):
    o = compressed_owner if compressed_owner is not None else dname(owner)
    return o + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def packet(qname, qtype, answers=(), authority=(), rcode=0, tc=False, qd=True, ad=False, ident=0x1234):
    flags = 0x8000 | 0x0100 | 0x0080 | rcode | (0x0200 if tc else 0) | (0x0020 if ad else 0)
    head = struct.pack(">HHHHHH", ident, flags, 1 if qd else 0, len(answers), len(authority), 0)
    q = dname(qname) + struct.pack(">HH", qtype, 1) if qd else b""
    return head + q + b"".join(answers) + b"".join(authority)


def dns_seed(name, typ, qi, pkt):
    put("dns", name, bytes([T[typ][0], qi]) + pkt)


def soa(zone, ttl=3600, minimum=300):
    rd = dname("ns." + zone) + dname("hostmaster." + zone) + struct.pack(">IIIII", 1, 7200, 900, 1209600, minimum)
    return rr(zone, 6, ttl, rd)


def txt(*strings):
    return b"".join(bytes([len(s)]) + s for s in strings)


ex, mx = "example.com", "mx.example.com"
dns_seed("mx-two", "MX", 0, packet(ex, 15, [rr(ex, 15, 3600, struct.pack(">H", 10) + dname("mx1.example.com")),
                                           rr(ex, 15, 3600, struct.pack(">H", 20) + dname("MX2.Example.COM"))], ad=True))
dns_seed("mx-compressed", "MX", 0, packet(ex, 15, [rr(ex, 15, 300, struct.pack(">H", 5) + b"\x02mx\xc0\x0c", b"\xc0\x0c")]))
dns_seed("mx-null", "MX", 0, packet(ex, 15, [rr(ex, 15, 3600, struct.pack(">H", 0) + b"\0")]))
dns_seed("mx-nodata", "MX", 0, packet(ex, 15, authority=[soa(ex)]))
dns_seed("mx-nxdomain", "MX", 0, packet(ex, 15, authority=[soa(ex, 600, 60)], rcode=3))
dns_seed("mx-servfail", "MX", 0, packet(ex, 15, rcode=2))
dns_seed("mx-servfail-noq", "MX", 0, packet(ex, 15, rcode=2, qd=False))
dns_seed("mx-truncated", "MX", 0, packet(ex, 15, tc=True))
dns_seed("a-two", "A", 1, packet(mx, 1, [rr(mx, 1, 60, bytes([192, 0, 2, 1])), rr(mx, 1, 120, bytes([192, 0, 2, 2]))]))
dns_seed("aaaa", "AAAA", 1, packet(mx, 28, [rr(mx, 28, 60, bytes(15) + b"\x01")], ad=True))
dns_seed("a-cname-chain", "A", 1, packet(mx, 1, [rr(mx, 5, 300, dname("alias.example.net")),
                                               rr("alias.example.net", 5, 200, dname("host.example.org")),
                                               rr("host.example.org", 1, 100, bytes([198, 51, 100, 7]))]))
dns_seed("a-cname-open", "A", 1, packet(mx, 1, [rr(mx, 5, 300, dname("elsewhere.example.net"))]))
dns_seed("a-cname-loop", "A", 1, packet(mx, 1, [rr(mx, 5, 300, dname("loop.example.net")),
                                              rr("loop.example.net", 5, 300, dname(mx))]))
dns_seed("a-cname-nx", "A", 1, packet(mx, 1, [rr(mx, 5, 300, dname("gone.example.net"))],
                                      authority=[soa("example.net")], rcode=3))
dns_seed("txt-sts", "TXT", 2, packet("_mta-sts." + ex, 16, [rr("_mta-sts." + ex, 16, 300, txt(b"v=STSv1; id=20240101T000000;"))]))
dns_seed("txt-split", "TXT", 3, packet("_smtp._tls." + ex, 16, [rr("_smtp._tls." + ex, 16, 300,
                                                                   txt(b"v=TLSRPTv1; ", b"rua=mailto:tlsrpt@example.com"))]))
dns_seed("txt-two", "TXT", 2, packet("_mta-sts." + ex, 16, [rr("_mta-sts." + ex, 16, 300, txt(b"v=STSv1; id=1")),
                                                          rr("_mta-sts." + ex, 16, 300, txt(b"v=STSv1; id=2"))]))
tlsa_owner = "_25._tcp." + mx
dns_seed("tlsa-3-1-1", "TLSA", 4, packet(tlsa_owner, 52, [rr(tlsa_owner, 52, 3600, bytes([3, 1, 1]) + bytes(range(32)))], ad=True))
dns_seed("tlsa-2-0-1", "TLSA", 4, packet(tlsa_owner, 52, [rr(tlsa_owner, 52, 3600, bytes([2, 0, 1]) + bytes(32)),
                                                        rr(tlsa_owner, 52, 3600, bytes([3, 1, 2]) + bytes(64))], ad=True))
dns_seed("wrong-question", "MX", 0, packet("other.example", 15, [rr("other.example", 15, 60, b"\0\x0a" + dname(mx))]))
dns_seed("not-response", "MX", 0, b"\x12\x34\x01\x00" + packet(ex, 15)[4:])
dns_seed("compression-loop", "MX", 0, packet(ex, 15)[:12 - 0] .replace(b"\0\x01\0\x00", b"\0\x01\0\x01") + dname(ex) + b"\0\x0f\0\x01" + b"\xc0\x1d" + b"\0\x0f\0\x01\0\0\0\x3c\0\x04\0\x0a\xc0\x1d")
put("dns", "query-mode-name", b"\x00\x80mx1.Example.com")
put("dns", "query-mode-escapes", b"\x04\x81a\\046b.\\255x.example.")

# ---------------------------------------------------------------- spool (spool_fuzz.cc)
# Input: byte 0 (bit 0: the harness fixes the CRCs; bit 1: also run open()), then a segment.


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF


def record(rtype, payload, version=2, flags=0, crc=None):
    return struct.pack("<IBBBBII", 0x31505253, rtype, flags, version, 0, len(payload),
                       crc32c(payload) if crc is None else crc) + payload


def s16(b):
    return struct.pack("<H", len(b)) + b


def envelope(qid, rcpts, mail_from=b"alice@example.org", v2=True, flags=2, kind=0, auth=b"", msgid=b"id@x"):
    e = bytes([len(qid)]) + qid + struct.pack("<Q", 1796611257000) + bytes([flags])
    if v2:
        e += bytes([kind])
    e += s16(mail_from)
    if v2:
        e += s16(auth) + s16(msgid)
    e += struct.pack("<I", len(rcpts)) + b"".join(s16(r) for r in rcpts)
    return e


def done(qid, idx=()):
    return bytes([len(qid)]) + qid + bytes([1 if idx else 0]) + struct.pack("<I", len(idx)) + b"".join(struct.pack("<I", i) for i in idx)


def attempts(qid, pairs):
    return bytes([len(qid)]) + qid + struct.pack("<I", len(pairs)) + b"".join(struct.pack("<II", i, n) for i, n in pairs)


Q1, Q2 = b"6B0AD79A00000001", b"6B0AD79A00000002"
body = b"Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"
m1 = record(1, envelope(Q1, [b"bob@example.net", b"carol@example.net"]) + body)
m2 = record(1, envelope(Q2, [b"dave@example.com"]) + body)
put("spool", "one-message", b"\x02" + m1)
put("spool", "two-messages-one-done", b"\x02" + m1 + m2 + record(2, done(Q2)))
put("spool", "partial-done-attempts", b"\x02" + m1 + record(2, done(Q1, [1])) + record(3, attempts(Q1, [(0, 3)])))
# HOLD records (type 5, issue 13: sealrelay-queue hold/release): the ATTEMPTS layout with
# (recipient, 1 held / 0 released); the last one wins.
put("spool", "hold-records", b"\x02" + m1 + record(5, attempts(Q1, [(0, 1), (1, 1)])) + record(5, attempts(Q1, [(1, 0)])))
put("spool", "v1-record", b"\x02" + record(1, envelope(Q1, [b"bob@example.net"], v2=False) + body, version=0))
put("spool", "external-body", b"\x02" + record(1, envelope(Q2, [b"x@y.example"]) + struct.pack("<QQ", 0, 4096), flags=1))
put("spool", "torn-tail", b"\x02" + m1 + m2[: len(m2) // 2])
put("spool", "bad-crc-middle", b"\x02" + m1[:-3] + b"XYZ" + m2)
put("spool", "garbage-then-record", b"\x00" + b"\x53\x52\x50\x31 garbage" + m2)
put("spool", "fix-crc-envelope", b"\x03" + record(1, envelope(Q1, [b"a@b"]) + b"x", crc=0))
put("spool", "duplicate-id", b"\x02" + m1 + m1)
put("spool", "all-done-reclaimed", b"\x02" + m2 + record(2, done(Q2)))
put("spool", "empty", b"\x02")

# ---------------------------------------------------------------- sidecar (sidecar_fuzz.cc)
# Input: byte 0 = split point, then frames: u32 length, version 1, type, fields (big-endian).


def be32(n):
    return struct.pack(">I", n)


def be64(n):
    return struct.pack(">Q", n)


def bstr(b):
    return be32(len(b)) + b


def frame(t, body):
    b = bytes([1, t]) + body
    return be32(len(b)) + b


def output(kind=2, frm=b"", rcpts=(b"bob@example.net",), msgid=b"m1@x", path=b"/var/lib/sr/outbox/1"):
    return bytes([kind]) + bstr(frm) + be32(len(rcpts)) + b"".join(bstr(r) for r in rcpts) + bstr(msgid) + bstr(path)


hello = frame(1, be32(4242) + bstr(b"relay.example.org"))
hello_ok = frame(2, bstr(b"sealrelay-sidecar 0.1"))
handoff = frame(3, be64(7) + bstr(Q1) + bstr(b"alice@example.org") + bstr(b"example.net") + be32(2) +
                bstr(b"bob@example.net") + bstr(b"carol@example.net") + bstr(b"/spool/0/seg-0000000000000001.log") +
                be64(16) + be64(900) + bytes([3]) + be32(3) + bytes([1, 3, 4]))
result = frame(4, be64(7) + be32(2) + bytes([3, 1]) + bstr(b"escrowed bob") + be32(1) + output())
put("sidecar", "hello", b"\x05" + hello)
put("sidecar", "hello-ok-ping-pong", b"\x03" + hello_ok + frame(5, be64(99)) + frame(6, be64(99)))
put("sidecar", "handoff", b"\x11" + handoff)
put("sidecar", "result", b"\x20" + result)
put("sidecar", "submit-submitted", b"\x07" + frame(7, be64(1) + output(kind=2, frm=b"portal@x")) + frame(8, be64(1) + b"\x01" + bstr(b"")))
put("sidecar", "retract", b"\x00" + frame(9, be64(3) + bstr(b"m1@example.org")) + frame(10, be64(3) + b"\x01" + be32(2) + bstr(b"")))
put("sidecar", "bad-version", b"\x00" + be32(2) + b"\x02\x05")
put("sidecar", "trailing", b"\x00" + be32(11) + b"\x01\x05" + be64(1) + b"!")
put("sidecar", "huge-count", b"\x00" + frame(4, be64(1) + be32(0xFFFFFFF0)))
put("sidecar", "split-header", b"\x02" + hello + hello)

# ---------------------------------------------------------------- text targets
# tlsrpt_fuzz.cc: byte 0 even = TXT records split at NUL, odd = a state file.
put("tlsrpt", "rua-mailto", b"\x00v=TLSRPTv1; rua=mailto:tlsrpt@example.com")
put("tlsrpt", "rua-both", b"\x00v=TLSRPTv1;rua=mailto:a%40b@example.com?subject=x, https://reports.example.com:8443/v1?x=1;")
put("tlsrpt", "two-records", b"\x00v=TLSRPTv1; rua=mailto:a@example.com\0v=TLSRPTv1; rua=mailto:b@example.com")
put("tlsrpt", "other-txt", b"\x00v=spf1 -all\0v=TLSRPTv1; rua=https://r.example/; ext_1=val")
put("tlsrpt", "bad-uri", b"\x00v=TLSRPTv1; rua=https://[::1]/")
put("tlsrpt", "state-empty", b"\x01tlsrpt-state\t1\nwindow\t0\nend\n")
put("tlsrpt", "state-full", b"\x01tlsrpt-state\t1\nwindow\t1796601600000\nC\texample.net\nP\tsts\t3\t1\n"
    b"S\tversion: STSv1\nS\tmode: enforce\nM\tmx.example.net\nF\tcertificate-expired\t1\t192.0.2.1\tmx.example.net\t198.51.100.2\tcert expired\\ttab\n"
    b"Q\t1796515200000\t1796601600000\t2\texample.org\nD\tmailto:tlsrpt@example.org\nP\tno-policy-found\t5\t0\nend\n")
put("tlsrpt", "state-cut", b"\x01tlsrpt-state\t1\nwindow\t5\nC\tx\n")
put("tlsrpt", "state-escapes", b"\x01tlsrpt-state\t1\nwindow\t0\nC\ta\\\\b\\nc\nP\ttlsa\t1\t0\nS\t3 1 1 abcd\nend\n")
# json_fuzz.cc: byte 0 even = an MTA-STS cache line, odd = the escaper's input.
put("json", "cache-line", b'\x00{"domain":"example.com","id":"20240101","fetched_at":1796611257,"max_age":86400,'
    b'"policy":"version: STSv1\\nmode: enforce\\nmx: mx.example.com\\nmax_age: 86400\\n"}')
put("json", "cache-line-escapes", b'\x00{ "domain" : "ex\\u00e9.example", "id":"a1", "fetched_at":0, "max_age":1, "extra":"x",'
    b' "n":-5, "policy":"version: STSv1\\r\\nmode: testing\\r\\nmx: *.example.net\\r\\nmax_age: 604800\\r\\n"}')
put("json", "cache-line-none", b'\x00{"domain":"a.b","id":"x","fetched_at":1,"max_age":1,"policy":"version: STSv1\\nmode: none\\nmax_age: 1\\n"}')
put("json", "cache-bad", b'\x00{"domain":"a.b","id":"x","fetched_at":1')
put("json", "escape-ascii", b'\x01plain "quoted" back\\slash\ttab')
put("json", "escape-utf8", b"\x01caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x93\xa7")
put("json", "escape-invalid", b"\x01\xff\xfe\xc3(\xed\xa0\x80\x7f\x00")
# https_fuzz.cc: byte 0 = split point, byte 1 = flags (1 HEAD, 2 EOF at the end).
put("https", "policy-200", b"\x20\x00HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 72\r\n\r\n"
    b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n\r\n")
put("https", "chunked", b"\x30\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0;ext=1\r\nTrailer: x\r\n\r\n")
put("https", "to-eof", b"\x10\x02HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n")
put("https", "redirect", b"\x05\x00HTTP/1.1 301 Moved\r\nLocation: https://evil.example/\r\nContent-Length: 0\r\n\r\n")
put("https", "head-204", b"\x00\x01HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n")
put("https", "too-large", b"\x08\x00HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\nabc")
put("https", "bad-status", b"\x02\x02HTTP/1.1 20 OK\r\n\r\n")
# headers_fuzz.cc: byte 0 % 3 (0 section, 1 address list, 2 DKIM canon), byte 1 = split / cap.
put("headers", "section", b"\x00\x10From: Ann <ann@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\n"
    b"Message-ID: <abc.123@example.org>\r\nTLS-Required: No\r\n\r\nbody\r\n")
put("headers", "folded", b"\x00\x21From: \"Smith, Ann\"\r\n <ann@example.org> (boss)\r\nSubject: a\r\n\tb\r\n\r\n")
put("headers", "cap", b"\x00\x07Subject: " + b"x" * 90 + b"\r\nFrom: late@example.org\r\n\r\n")
put("headers", "addr-group", b"\x01\x00team: a@x.example, \"B\" <b@y.example>; <@relay:c@z.example>")
put("headers", "addr-quoted", b"\x01\x00\"odd<name>\"@x.example (comment (nested)), Name \\\" <d@e>")
put("headers", "dkim-body", b"\x02\x05a  b \t\r\n\r\nline\t \r\n\r\n\r\n")
put("headers", "dkim-field", b"\x02\x03Subject :  Hello \t World\r\n  folded  ")
# auth_fuzz.cc: byte 0 % 3 (0 SASL, 1 users file + NUL + address, 2 tokens file + NUL + header).
put("auth", "sasl-plain", b"\x00PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==")
put("auth", "sasl-login", b"\x00login =")
put("auth", "sasl-response", b"\x00YWxpY2U=")
put("auth", "sasl-cancel", b"\x00*")
put("auth", "users", b"\x01# users\nalice@example.org:$1$salt$qJH7.N4xYta3aEG/dfqo/0\n"
    b"bob:$6$saltsalt$abc:*@example.org, news@example.org\n\0news@EXAMPLE.org")
put("auth", "users-bad", b"\x01carol:notahash\n\0x@y")
put("auth", "tokens", b"\x02# api tokens\nAbCdEfGhIjKlMnOpQrStUv0123456789\n  tok-en.with_~+/chars====  \n\0Bearer AbCdEfGhIjKlMnOpQrStUv0123456789")
put("auth", "tokens-short", b"\x02short\n\0bearer   short")
# portal_fuzz.cc: byte 0 even = an HTTP request, odd = path NUL body NUL Cookie value.
put("portal", "get-link", b"\x00GET /m/AbCd-_12/SeCrEt_value-0123 HTTP/1.1\r\nHost: portal.example\r\nCookie: a=b; sr_portal=Zm9vYmFy\r\n\r\n")
put("portal", "post-code", b"\x00POST /m/AbCd/SeCrEt HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 27\r\n\r\nx=1&code=12+34%2F56&code=9\r\n")
put("portal", "download", b"\x00GET /m/AbCd/SeCrEt/a/3 HTTP/1.1\r\nHost: p\r\n\r\n")
put("portal", "raw-parts", b"\x01/m/a/b/c/d/e/f\0code=%zz%4&code\0sr_portal=x; sr_portal=y;sr_portal=;=z")
put("portal", "raw-escapes", b"\x01/m//\0code=%41%42+%43\0 sr_portal=AbC-_")
# dsn_fuzz.cc: flags (bit 0 redacted), then original NUL diagnostic 1 NUL diagnostic 2 NUL reason NUL Message-ID.
orig = b"Received: from x\r\nFrom: Alice <alice@example.org>\r\nSubject: report\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"
put("dsn", "plain", b"\x00" + orig + b"\x00550 5.1.1 <bob@example.net>: unknown user\x00451 4.4.7 timeout\x00Delivery failed.\x00m1@example.org")
put("dsn", "redacted", b"\x01" + orig + b"\x00550 5.7.10 REQUIRETLS needed\x00\x00\x00m1@example.org")
put("dsn", "no-body-cut", b"\x00From: a@b\r\nX-Long: " + b"y" * 200 + b"\x00550-first\r\n550 second\x00\x00reason\r\nX-Injected: 1\x00id\r\nx")
put("dsn", "boundary-in-headers", b"\x00X: 1\r\n--6B0AD79A00000001.1796614857/relay.example.org--\r\n\r\n\x00550 x\x00\x00\x00")

# dane_fuzz.cc (FuzzedDataProvider): TLSA text, rdatas, DER certificates and the host are
# backslash-terminated strings ("\\" stands for one backslash); the counts of rdatas and of
# certificates are the last two bytes (read from the end, rdatas first).
import base64
import hashlib


def fdp_str(b):
    return b.replace(b"\\", b"\\\\") + b"\\x"


def der_of(name):
    path = os.path.join(HERE, "..", "certs", name)
    if not os.path.exists(path):
        return None
    text = open(path).read()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


def dane_seed(name, text, rdatas, certs, host):
    if any(c is None for c in certs):
        return
    data = fdp_str(text) + b"".join(fdp_str(r) for r in rdatas) + b"".join(fdp_str(c) for c in certs) + fdp_str(host)
    put("dane", name, data + bytes([len(certs), len(rdatas)]))


leaf, inter, ca = der_of("chained.crt"), der_of("inter.crt"), der_of("ca.crt")
if leaf and inter and ca:
    dane_seed("ee-sha256", b"3 1 1 " + b"00" * 32, [bytes([3, 0, 1]) + hashlib.sha256(leaf).digest()], [leaf, inter], b"mx.example.test")
    dane_seed("ta-full-ca", b"DANE-TA CERT FULL " + ca.hex().encode(), [], [leaf, inter, ca], b"localhost")
    dane_seed("ta-sha512", b"2 0 2 " + hashlib.sha512(inter).hexdigest().encode(), [bytes([2, 1, 1]) + bytes(32)], [leaf, inter], b"other.example")
    dane_seed("pkix-unusable", b"PKIX-EE SPKI SHA2-256 ab", [bytes([0, 0, 1, 1])], [leaf], b"mx")
    dane_seed("truncated-der", b"3 0 1 zz", [b"\x03"], [leaf[: len(leaf) // 2]], b"")
