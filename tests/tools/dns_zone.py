#!/usr/bin/python3
# dns_zone: a loopback DNS fixture for sealrelay tests. Turns a small zone description
# (MX, A, AAAA, TXT, CNAME, TLSA..., null MX, NXDOMAIN, SERVFAIL, AD bit, truncation) into
# an ldns-testns datafile (Debian's ldnsutils) and, in `serve` mode, runs ldns-testns on it
# and prints "ready PORT" once it answers on 127.0.0.1. Answers act like a recursive
# resolver's: QR RD RA (+AD when asked), the query's ID and question copied back, CNAME
# chains expanded, NODATA with an SOA for names that exist without the asked type, and
# NXDOMAIN (with SOA) for names not described. Python 3.11 standard library only.
import argparse
import ctypes
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

FLAG_WORDS = {"NXDOMAIN", "SERVFAIL", "REFUSED", "AD", "TC", "DROP"}
USAGE = """zone description, one item per line ('#' or ';' starts a comment):
  NAME [TTL] TYPE RDATA      a record in zone-file syntax (MX, A, AAAA, TXT, CNAME, TLSA, ...)
  NAME MX 0 .                null MX (RFC 7505)
  NAME NXDOMAIN|SERVFAIL|REFUSED   that rcode for NAME and every name below it
  NAME AD                    answers about NAME carry the AD bit
  NAME TC                    UDP answers about NAME are truncated (TC, empty): the full answer is on TCP
  NAME DROP                  queries about NAME get no usable answer (reply with a wrong ID): a timeout
  $TTL N                     default TTL (300)
Names are absolute whether or not they end with '.'."""


def absname(n):
    n = n.strip()
    return n if n.endswith(".") else n + "."


class zone:
    def __init__(self):
        self.ttl = 300
        self.records = {}     # name -> list of (type, ttl, rdata), in order
        self.flags = {}       # name -> set of FLAG_WORDS
        self.order = []       # names in first-seen order

    def add_name(self, name):
        if name not in self.records and name not in self.flags:
            self.order.append(name)
        self.records.setdefault(name, [])
        self.flags.setdefault(name, set())

    def parse(self, text):
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = re.split(r"\s[#;]|^[#;]", raw, maxsplit=1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "$TTL":
                self.ttl = int(words[1])
                continue
            if len(words) < 2:
                raise SystemExit(f"dns_zone: line {lineno}: expected NAME TYPE ...: {raw!r}")
            name = absname(words[0])
            rest = words[1:]
            ttl = None
            if rest[0].isdigit():
                ttl = int(rest[0])
                rest = rest[1:]
            if not rest:
                raise SystemExit(f"dns_zone: line {lineno}: missing TYPE: {raw!r}")
            rtype = rest[0].upper()
            self.add_name(name)
            if rtype in FLAG_WORDS and len(rest) == 1:
                self.flags[name].add(rtype)
                continue
            rdata = line.split(None, len(words) - len(rest) + 1)[-1] if len(rest) > 1 else ""
            if rtype in ("MX", "CNAME", "NS", "PTR"):
                # Relative targets would pick up ldns's origin: make them absolute.
                parts = rdata.split()
                if parts and parts[-1] != ".":
                    parts[-1] = absname(parts[-1])
                rdata = " ".join(parts)
            self.records[name].append((rtype, ttl if ttl is not None else self.ttl, rdata))
        return self

    def rr(self, name, rtype, ttl, rdata):
        return f"{name} {ttl} IN {rtype} {rdata}"

    def soa(self, name):
        """The SOA a negative answer about `name` carries (its TLD as the zone apex)."""
        labels = [l for l in name.split(".") if l]
        apex = labels[-1] + "." if labels else "."
        return f"{apex} {self.ttl} IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 {min(self.ttl, 60)}"

    def chain(self, name, limit=8):
        """CNAME records from `name` to the end of its chain, and the final name."""
        out, seen = [], set()
        while limit > 0 and name not in seen:
            seen.add(name)
            cn = [r for r in self.records.get(name, []) if r[0] == "CNAME"]
            if not cn:
                break
            out.append(self.rr(name, *cn[0]))
            name = absname(cn[0][2])
            limit -= 1
        return out, name

    def entry(self, match, reply, question, answer=(), authority=(), copy_id=True, note=""):
        lines = ["ENTRY_BEGIN"]
        if note:
            lines.append(f"; {note}")
        lines.append(f"MATCH {match}")
        lines.append("ADJUST copy_query" + (" copy_id" if copy_id else ""))
        lines.append(f"REPLY {reply}")
        lines.append("SECTION QUESTION")
        lines.append(question)
        if answer:
            lines.append("SECTION ANSWER")
            lines.extend(answer)
        if authority:
            lines.append("SECTION AUTHORITY")
            lines.extend(authority)
        lines.append("ENTRY_END")
        return "\n".join(lines) + "\n"

    def datafile(self, default="NXDOMAIN", ad_all=False):
        out = ["; generated by tests/tools/dns_zone.py: first matching entry answers\n"]
        # Flags that cover a whole subtree (rcodes, DROP) come first so they win.
        for name in self.order:
            fl = self.flags[name]
            for rc in ("NXDOMAIN", "SERVFAIL", "REFUSED"):
                if rc in fl:
                    auth = [self.soa(name)] if rc == "NXDOMAIN" else []
                    out.append(self.entry("opcode subdomain", f"QR RD RA {rc}", f"{name} IN A",
                                          authority=auth, note=f"{name} and below: {rc}"))
            if "DROP" in fl:
                # No copy_id: the reply keeps ID 0x5a5a, which the resolver must ignore.
                out.append(self.entry("opcode qname", "QR RD RA NOERROR", f"{name} IN A",
                                      copy_id=False, note=f"{name}: answer with a wrong ID (timeout)")
                           .replace("ENTRY_END", "HEX_ANSWER_BEGIN\n5a5a 8180 0000 0000 0000 0000\nHEX_ANSWER_END\nENTRY_END"))
        for name in self.order:
            fl = self.flags[name]
            if fl & {"NXDOMAIN", "SERVFAIL", "REFUSED", "DROP"}:
                continue
            flags = "QR RD RA NOERROR" + (" AD" if ad_all or "AD" in fl else "")
            if "TC" in fl:
                out.append(self.entry("opcode qname UDP", "QR RD RA NOERROR TC", f"{name} IN A",
                                      note=f"{name}: truncated over UDP"))
            cnames, target = self.chain(name)
            types = []
            for rtype, _, _ in self.records.get(target, []):
                if rtype not in types and rtype != "CNAME":
                    types.append(rtype)
            for rtype in types:
                ans = cnames + [self.rr(target, t, ttl, rd) for t, ttl, rd in self.records[target] if t == rtype]
                out.append(self.entry("opcode qtype qname", flags, f"{name} IN {rtype}", answer=ans))
            if cnames:
                # Any other type: the chain alone (the resolver follows or gives up).
                auth = [] if target in self.records else [self.soa(target)]
                out.append(self.entry("opcode qname", flags, f"{name} IN A", answer=cnames, authority=auth,
                                      note=f"{name}: CNAME chain to {target}"))
            else:
                out.append(self.entry("opcode qname", flags, f"{name} IN A", authority=[self.soa(name)],
                                      note=f"{name}: NODATA for types not listed"))
        rc = default.upper()
        auth = [self.soa("invalid.")] if rc == "NXDOMAIN" else []
        out.append(self.entry("opcode", f"QR RD RA {rc}", ". IN A", authority=auth,
                              note=f"anything else: {rc}"))
        return "\n".join(out)


# ------------------------------------------------------------------------------ serve
def probe(port, deadline):
    """True once a UDP query to 127.0.0.1:port gets any answer (ldns-testns is serving)."""
    q = struct.pack(">HHHHHH", random.randrange(1, 0xFFFF), 0x0100, 1, 0, 0, 0)
    q += b"\x05ready\x04test\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        while time.monotonic() < deadline:
            s.sendto(q, ("127.0.0.1", port))
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                return True
    finally:
        s.close()
    return False


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: ldns-testns gets SIGTERM if we are killed, even by SIGKILL.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def serve(o, text):
    data = text if o.raw else zone().parse(text).datafile(o.default, o.ad)
    if o.datafile:
        path = o.datafile
        with open(path, "w") as f:
            f.write(data)
    else:
        fd, path = tempfile.mkstemp(prefix="dns_zone.", suffix=".data")
        with os.fdopen(fd, "w") as f:
            f.write(data)
    def free_port():
        """A port free for both UDP and TCP (ldns-testns -r picks ports that can be taken)."""
        for _ in range(50):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("0.0.0.0", 0))
            port = u.getsockname()[1]
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
            finally:
                t.close()
                u.close()
        return 0

    def launch(port):
        """Start ldns-testns on `port`; return (child, port, log) or (None, 0, log)."""
        args = [o.ldns_testns] + (["-v"] * o.verbose) + ["-p", str(port)] + [path]
        if o.verbose:
            # Its log goes straight to our stderr, so a query is logged before it is
            # answered (a relay through a pipe would lag behind the answer): wait until it
            # answers instead of reading "Listening on port".
            c = subprocess.Popen(args, stdout=sys.stderr.fileno(), stderr=subprocess.STDOUT,
                                 preexec_fn=die_with_parent)
            until = time.monotonic() + 5
            while time.monotonic() < until:
                if c.poll() is not None:
                    return None, 0, [f"exited with {c.returncode} (its log is above)\n"]
                if probe(port, time.monotonic() + 0.2):
                    return c, port, []
            c.kill()
            c.wait()
            return None, 0, ["no answer within 5 s\n"]
        c = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
        log = []
        while True:
            line = c.stdout.readline().decode(errors="replace")
            if not line:
                c.wait()
                return None, 0, log
            log.append(line)
            m = re.search(r"Listening on port (\d+)", line)
            if m:
                return c, int(m.group(1)), log

    child = None
    port = 0
    log = []
    # A fixed --port is tried once; otherwise a few free ports in turn, since another
    # process may take the one we picked before ldns-testns binds it.
    for _ in range(1 if o.port else 8):
        child, port, log = launch(o.port or free_port())
        if child:
            break
    if child is None:
        sys.stderr.write("dns_zone: ldns-testns exited:\n" + "".join(log))
        if not o.datafile:
            os.unlink(path)
        sys.exit(1)

    def stop(signum=None, frame=None):
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
        if not o.datafile:
            os.unlink(path)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + 10

    def drain():
        for line in child.stdout:
            if o.verbose:
                sys.stderr.write(line.decode(errors="replace"))

    # The drain thread starts with SIGTERM/SIGINT blocked, so they reach the main thread
    # and interrupt its wait at once.
    sigs = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    if child.stdout:
        threading.Thread(target=drain, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
    if not probe(port, deadline):
        sys.stderr.write(f"dns_zone: ldns-testns does not answer on 127.0.0.1:{port}\n")
        stop()
    stopping = []

    def on_term(signum, frame):
        # Only ask here: the main thread's child.wait() holds Popen's lock and reaps it.
        stopping.append(signum)
        child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"ready {port}", flush=True)
    child.wait()
    if not o.datafile:
        os.unlink(path)
    sys.stdout.flush()
    if not stopping:
        sys.stderr.write("dns_zone: ldns-testns exited\n")
    # os._exit: interpreter shutdown would stall on the drain thread's pipe reader.
    os._exit(0 if stopping else 1)


def main(argv=None):
    p = argparse.ArgumentParser(description="Loopback DNS fixture over ldns-testns.",
                                epilog=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("gen", "serve"), help="gen: print the datafile; serve: run ldns-testns on it")
    p.add_argument("zone", help="zone description file ('-' for stdin)")
    p.add_argument("--port", type=int, default=0, help="UDP+TCP port (0: ldns-testns picks one; printed as 'ready PORT')")
    p.add_argument("--datafile", help="where to write the datafile in serve mode (default: a temp file)")
    p.add_argument("--default", choices=("NXDOMAIN", "SERVFAIL", "REFUSED"), default="NXDOMAIN",
                   type=str.upper, help="rcode for names the description does not mention")
    p.add_argument("--ad", action="store_true", help="set the AD bit on every NOERROR answer")
    p.add_argument("--raw", action="store_true",
                   help="serve: the zone file is already an ldns-testns datafile (ENTRY_BEGIN ...), served as is")
    p.add_argument("--ldns-testns", default="/usr/bin/ldns-testns")
    p.add_argument("-v", "--verbose", action="count", default=0, help="pass -v to ldns-testns, its log to stderr")
    o = p.parse_args(argv)
    text = sys.stdin.read() if o.zone == "-" else open(o.zone).read()
    if o.mode == "gen":
        sys.stdout.write(zone().parse(text).datafile(o.default, o.ad))
        return
    serve(o, text)


if __name__ == "__main__":
    main()
