#!/usr/bin/python3
# dns_synth: a fast loopback DNS responder for benchmarks with thousands of recipient
# domains, where ldns-testns (dns_zone.py) scans its whole datafile for every query (under
# 100 queries/s at 10,000 domains). Answers are computed from the name, not looked up:
#   dN.test (N < K)            MX 10 <mx>            (A/AAAA/TXT: NODATA)
#   <mx>                        A <addr>              (AAAA: NODATA)
#   _mta-sts.dN.test            TXT "v=STSv1; id=<id>;"   when dN publishes, else NXDOMAIN
#   mta-sts.dN.test             A <addr>              when dN publishes, else NXDOMAIN
#   anything else               NXDOMAIN
# dN publishes MTA-STS when int((N+1)*F) > int(N*F): the fraction F spread evenly over
# 0..K-1 (tools/bench-relay uses the same rule).
# --providers P instead of one <mx> (tools/bench-shaping): dN.test is hosted by provider
# NN = N mod P: MX 10 mx1.providerNN.test, MX 20 mx2.providerNN.test (NN two digits), and
# both hosts have A <provider-base> + NN (127.0.1.1 for provider00): one address each. UDP only (answers are small), answers
# carry QR RD RA, the query's ID and question, and an SOA for negative answers.
# Prints "ready PORT" once bound; exits 0 on SIGTERM. Python 3.11 standard library only.
import argparse
import ipaddress
import os
import re
import signal
import socket
import struct
import sys

T_A, T_NS, T_SOA, T_MX, T_TXT, T_AAAA = 1, 2, 6, 15, 16, 28
NOERROR, NXDOMAIN, FORMERR = 0, 3, 1


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


class synth:
    def __init__(self, o):
        self.o = o
        self.mx = o.mx.lower().strip(".")
        self.addr = ipaddress.ip_address(o.addr).packed
        self.ttl = o.ttl
        self.domain_re = re.compile(r"(_mta-sts\.|mta-sts\.)?d([0-9]+)\.test")
        self.provider_re = re.compile(r"mx[12]\.provider([0-9]{2})\.test")
        self.provider_base = int(ipaddress.ip_address(o.provider_base))
        self.soa = self.rr(encode_name("test"), T_SOA,
                           encode_name("ns.test") + encode_name("hostmaster.test") +
                           struct.pack(">IIIII", 1, 3600, 600, 86400, self.ttl))

    def publishes(self, n):
        f = self.o.sts_fraction
        return int((n + 1) * f) > int(n * f)

    def rr(self, owner, rtype, rdata):
        return owner + struct.pack(">HHIH", rtype, 1, self.ttl, len(rdata)) + rdata

    def answer(self, name, qtype):
        """(rcode, [answer rdata records with owner = the question name pointer])."""
        q = b"\xc0\x0c"   # the question's name
        if self.o.providers:
            pm = self.provider_re.fullmatch(name)
            if pm:
                nn = int(pm.group(1))
                if nn >= self.o.providers:
                    return NXDOMAIN, []
                addr = ipaddress.ip_address(self.provider_base + nn).packed
                return NOERROR, [self.rr(q, T_A, addr)] if qtype == T_A else []
        elif name == self.mx:
            return NOERROR, [self.rr(q, T_A, self.addr)] if qtype == T_A else []
        m = self.domain_re.fullmatch(name)
        if not m:
            return NXDOMAIN, []
        n = int(m.group(2))
        if n >= self.o.domains or (m.group(2) != str(n)):
            return NXDOMAIN, []
        prefix = m.group(1)
        if prefix is None:
            if qtype != T_MX:
                return NOERROR, []
            if self.o.providers:
                host = "provider%02d.test" % (n % self.o.providers)
                return NOERROR, [self.rr(q, T_MX, struct.pack(">H", 10) + encode_name("mx1." + host)),
                                 self.rr(q, T_MX, struct.pack(">H", 20) + encode_name("mx2." + host))]
            return NOERROR, [self.rr(q, T_MX, struct.pack(">H", 10) + encode_name(self.mx))]
        if not self.publishes(n):
            return NXDOMAIN, []
        if prefix == "_mta-sts.":
            txt = f"v=STSv1; id={self.o.sts_id};".encode()
            return NOERROR, [self.rr(q, T_TXT, bytes([len(txt)]) + txt)] if qtype == T_TXT else []
        return NOERROR, [self.rr(q, T_A, self.addr)] if qtype == T_A else []

    def respond(self, pkt):
        if len(pkt) < 12:
            return None
        qid, flags, qd = struct.unpack(">HHH", pkt[:6])
        if flags & 0x8000 or qd != 1:
            return None
        i, labels = 12, []
        while i < len(pkt) and pkt[i] != 0:
            ln = pkt[i]
            if ln & 0xC0 or i + 1 + ln > len(pkt):
                return None
            labels.append(pkt[i + 1:i + 1 + ln].decode("ascii", "replace"))
            i += 1 + ln
        if i + 5 > len(pkt):
            return None
        qtype, _qclass = struct.unpack(">HH", pkt[i + 1:i + 5])
        question = pkt[12:i + 5]
        rcode, answers = self.answer(".".join(labels).lower(), qtype)
        auth = [] if answers else [self.soa]
        rflags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode   # QR, RD copied, RA
        head = struct.pack(">HHHHHH", qid, rflags, 1, len(answers), len(auth), 0)
        return head + question + b"".join(answers) + b"".join(auth)


def main(argv=None):
    p = argparse.ArgumentParser(description="Synthesized DNS answers for benchmarks (loopback only).")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback; port 0 = pick one)")
    p.add_argument("--domains", type=int, required=True, help="K: d0.test .. d<K-1>.test exist")
    p.add_argument("--sts-fraction", type=float, default=0.0, help="fraction F of the domains publishing MTA-STS")
    p.add_argument("--sts-id", default="bench1", help="the id= of the _mta-sts TXT records")
    p.add_argument("--mx", default="mx.mx.test", help="every domain's MX host")
    p.add_argument("--addr", default="127.0.0.1", help="the address of the MX host and of mta-sts.<domain>")
    p.add_argument("--ttl", type=int, default=86400, help="TTL of every answer (and the negative TTL)")
    p.add_argument("--providers", type=int, default=0,
                   help="P (1-100): dN.test's MX hosts are mx1/mx2.providerNN.test, NN = N mod P (instead of --mx)")
    p.add_argument("--provider-base", default="127.0.1.1", help="the address of provider00's MX hosts; NN adds NN")
    o = p.parse_args(argv)
    if not 0 <= o.providers <= 100:
        p.error("--providers takes 0..100")
    last = ipaddress.ip_address(int(ipaddress.ip_address(o.provider_base)) + max(o.providers - 1, 0))
    host, _, port = o.listen.rpartition(":")
    if (not ipaddress.ip_address(host.strip("[]")).is_loopback or not ipaddress.ip_address(o.addr).is_loopback or
            not ipaddress.ip_address(o.provider_base).is_loopback or not last.is_loopback):
        p.error("loopback addresses only")
    s = synth(o)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    # A relay warming 10,000 domains sends bursts of thousands of queries: a deep receive
    # queue (beyond net.core.rmem_max when allowed to) keeps them from being dropped.
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind((host.strip("[]"), int(port)))

    def stop(signum, frame):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready {sock.getsockname()[1]}", flush=True)
    while True:
        pkt, peer = sock.recvfrom(4096)
        out = s.respond(pkt)
        if out:
            sock.sendto(out, peer)


if __name__ == "__main__":
    main()
