#!/usr/bin/python3
# dnssec_world: a loopback DNSSEC world for sealrelay's DANE tests. From a zone description
# (dns_zone.py's record syntax plus $ZONE lines) it makes keys (ldns-keygen), signs the
# zones (ldns-signzone), serves them with a private nsd on 127.0.0.1:<high port>, and runs a
# private validating unbound on 127.0.0.1:<another high port> whose trust anchors are the
# signed zones' DS records; prints "ready PORT" (unbound's port) once unbound answers.
# Non-root configs (no chroot, no user switch, no syslog); everything lives in one work
# directory; nothing is sent anywhere but 127.0.0.1. Python 3.11 standard library only.
import argparse
import base64
import ctypes
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

MODES = ("secure", "insecure", "bogus", "expired", "dead")
USAGE = """zone description, one item per line ('#' or ';' starts a comment):
  $ZONE NAME [MODE]          a zone; MODE is one of
      secure    signed, its DS is a trust anchor: answers carry AD (default)
      insecure  unsigned, declared domain-insecure: answers without AD
      bogus     signed and anchored, then every RRSIG except the DNSKEY's corrupted: SERVFAIL
      expired   signed and anchored with signatures that expired in 2020: SERVFAIL
      dead      anchored to nothing, its server never answers (closed port): SERVFAIL
  NAME [TTL] TYPE RDATA      a record (MX, A, AAAA, TXT, CNAME, TLSA, ...) in the zone
                             that is the longest suffix of NAME
  NAME BOGUS [TYPE ...]      after signing, corrupt the RRSIGs over NAME's TYPE records
                             (all of NAME's types without a TYPE): those answers are bogus
  $TTL N                     default TTL (300)
Names are absolute whether or not they end with '.'. Each zone gets its SOA, an NS
ns.<zone> and its A 127.0.0.1; names outside every zone get SERVFAIL (REFUSED upstream)."""


def absname(n):
    n = n.strip().lower()
    return n if n.endswith(".") else n + "."


class zone_spec:
    def __init__(self, name, mode):
        self.name = name
        self.mode = mode
        self.records = []       # (name, ttl, type, rdata)
        self.bogus = []         # (name, set of types or None = all)


class world_spec:
    def __init__(self):
        self.ttl = 300
        self.zones = {}         # name -> zone_spec, in declaration order

    def zone_of(self, name):
        best = None
        for z in self.zones:
            if name == z or name.endswith("." + z):
                if best is None or len(z) > len(best):
                    best = z
        return self.zones.get(best) if best else None

    def parse(self, text):
        pending = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = re.split(r"\s[#;]|^[#;]", raw, maxsplit=1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "$TTL":
                self.ttl = int(words[1])
                continue
            if words[0] == "$ZONE":
                if len(words) not in (2, 3) or (len(words) == 3 and words[2].lower() not in MODES):
                    raise SystemExit(f"dnssec_world: line {lineno}: $ZONE NAME [{'|'.join(MODES)}]: {raw!r}")
                name = absname(words[1])
                self.zones[name] = zone_spec(name, words[2].lower() if len(words) == 3 else "secure")
                continue
            if len(words) < 2:
                raise SystemExit(f"dnssec_world: line {lineno}: expected NAME TYPE ...: {raw!r}")
            pending.append((lineno, raw, line, words))
        for lineno, raw, line, words in pending:
            name = absname(words[0])
            z = self.zone_of(name)
            if z is None:
                raise SystemExit(f"dnssec_world: line {lineno}: {name} is in no $ZONE: {raw!r}")
            rest = words[1:]
            if rest[0].upper() == "BOGUS":
                types = {t.upper() for t in rest[1:]} or None
                z.bogus.append((name, types))
                continue
            ttl = self.ttl
            if rest[0].isdigit():
                ttl = int(rest[0])
                rest = rest[1:]
            if len(rest) < 2:
                raise SystemExit(f"dnssec_world: line {lineno}: expected NAME [TTL] TYPE RDATA: {raw!r}")
            rtype = rest[0].upper()
            rdata = line.split(None, len(words) - len(rest) + 1)[-1]
            if rtype in ("MX", "CNAME", "NS", "PTR"):
                parts = rdata.split()
                if parts and parts[-1] != ".":
                    parts[-1] = absname(parts[-1])
                rdata = " ".join(parts)
            z.records.append((name, ttl, rtype, rdata))
        if not self.zones:
            raise SystemExit("dnssec_world: no $ZONE in the description")
        return self


# ------------------------------------------------------------------------------ helpers
def die_with_parent():
    # PR_SET_PDEATHSIG = 1: our servers get SIGTERM if we are killed, even by SIGKILL.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def free_port(exclude=()):
    """A 127.0.0.1 port free for both UDP and TCP right now."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if port in exclude or port < 1024:
                continue
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise SystemExit("dnssec_world: no free port")


def query(port, name, qtype=6, deadline=0.5, do=False):
    """One UDP query to 127.0.0.1:port; (rcode, flags) or None without an answer in time."""
    qid = random.randrange(1, 0xFFFF)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if do else 0)
    for label in name.rstrip(".").split("."):
        if label:
            q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", qtype, 1)
    if do:
        q += b"\x00" + struct.pack(">HHIH", 41, 1232, 0x8000, 0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(q, ("127.0.0.1", port))
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([s], [], [], left)
            if not r:
                return None
            data = s.recv(65535)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                flags = struct.unpack(">H", data[2:4])[0]
                return flags & 0xF, flags
    except OSError:
        return None
    finally:
        s.close()


def run(args, cwd):
    p = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise SystemExit(f"dnssec_world: {' '.join(args)} failed:\n{p.stdout.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")


# ------------------------------------------------------------------------------ zones
def zone_text(spec, ttl):
    z = spec.name
    lines = [f"$ORIGIN {z}", f"$TTL {ttl}",
             f"{z} {ttl} IN SOA ns.{z} hostmaster.{z} 1 3600 600 86400 {min(ttl, 60)}",
             f"{z} {ttl} IN NS ns.{z}", f"ns.{z} {ttl} IN A 127.0.0.1"]
    for name, rttl, rtype, rdata in spec.records:
        lines.append(f"{name} {rttl} IN {rtype} {rdata}")
    return "\n".join(lines) + "\n"


def corrupt(signed_text, spec):
    """Flip a byte in the signatures of the RRSIGs spec.bogus names (or all but DNSKEY's)."""
    out = []
    targets = spec.bogus
    whole = spec.mode == "bogus"
    for line in signed_text.splitlines():
        f = line.split()
        if len(f) >= 13 and f[3] == "RRSIG":
            owner, covered = f[0].lower(), f[4].upper()
            hit = whole and covered not in ("DNSKEY",)
            for name, types in targets:
                if owner == name and (types is None or covered in types):
                    hit = True
            if hit:
                sig = bytearray(base64.b64decode("".join(f[12:])))
                sig[len(sig) // 2] ^= 0x5A
                line = " ".join(f[:12] + [base64.b64encode(bytes(sig)).decode()])
        out.append(line)
    return "\n".join(out) + "\n"


def build_zones(world, work, o):
    """Write, key and sign every zone; return {zone: (zonefile or None, ds lines)}."""
    built = {}
    for z in world.zones.values():
        if z.mode == "dead":
            built[z.name] = (None, [])
            continue
        base = z.name.rstrip(".") or "root"
        path = os.path.join(work, base + ".zone")
        with open(path, "w") as f:
            f.write(zone_text(z, world.ttl))
        if z.mode == "insecure":
            built[z.name] = (path, [])
            continue
        # One ECDSA P-256 key signs everything (a CSK: SEP flag set), its DS is the anchor.
        key = run([o.ldns_keygen, "-a", "ECDSAP256SHA256", "-k", z.name], work).strip().splitlines()[-1]
        args = [o.ldns_signzone, "-f", path + ".signed"]
        if z.mode == "expired":
            args += ["-i", "20190101000000", "-e", "20200101000000"]
        else:
            # Inception an hour back so a clock skew between here and unbound cannot matter.
            now = int(time.time())
            args += ["-i", str(now - 3600), "-e", str(now + 30 * 86400)]
        run(args + ["-o", z.name, path, key], work)
        signed = path + ".signed"
        if z.mode == "bogus" or z.bogus:
            with open(signed) as f:
                text = f.read()
            with open(signed, "w") as f:
                f.write(corrupt(text, z))
        with open(os.path.join(work, key + ".ds")) as f:
            ds = [l.strip() for l in f if l.strip() and not l.startswith(";")]
        built[z.name] = (signed, ds)
    return built


def nsd_conf(work, port, built):
    lines = ["server:",
             f'  ip-address: 127.0.0.1@{port}',
             f"  port: {port}",
             "  do-ip6: no",
             "  server-count: 1",
             '  username: ""',
             '  chroot: ""',
             f'  zonesdir: "{work}"',
             '  database: ""',
             f'  zonelistfile: "{work}/nsd.zonelist"',
             f'  xfrdfile: "{work}/nsd.xfrd.state"',
             f'  xfrdir: "{work}"',
             f'  pidfile: "{work}/nsd.pid"',
             f'  logfile: "{work}/nsd.log"',
             "  verbosity: 1",
             "  hide-version: yes",
             "  reuseport: no",
             "remote-control:",
             "  control-enable: no"]
    for name, (path, _) in built.items():
        if path:
            lines += ["zone:", f'  name: "{name}"', f'  zonefile: "{path}"']
    return "\n".join(lines) + "\n"


def unbound_conf(work, port, nsd_port, dead_port, world, built):
    lines = ["server:",
             f"  interface: 127.0.0.1@{port}",
             f"  port: {port}",
             "  outgoing-interface: 127.0.0.1",
             "  do-ip4: yes",
             "  do-ip6: no",
             "  do-udp: yes",
             "  do-tcp: yes",
             "  access-control: 127.0.0.0/8 allow",
             "  do-not-query-localhost: no",
             "  num-threads: 1",
             "  so-reuseport: no",
             "  outgoing-range: 64",
             "  num-queries-per-thread: 64",
             f'  directory: "{work}"',
             '  chroot: ""',
             '  username: ""',
             "  use-syslog: no",
             f'  logfile: "{work}/unbound.log"',
             f'  pidfile: "{work}/unbound.pid"',
             "  verbosity: 1",
             "  val-log-level: 2",
             "  log-servfail: yes",
             '  module-config: "validator iterator"',
             "  qname-minimisation: no",
             "  aggressive-nsec: no",
             "  prefetch: no",
             '  target-fetch-policy: "0 0 0 0 0"',
             "  harden-dnssec-stripped: yes",
             "  val-permissive-mode: no",
             "  infra-host-ttl: 60",
             # A server that does not answer must end in SERVFAIL within a second or two,
             # not in a dropped query (discard-timeout) or a minute of backed-off retries.
             "  discard-timeout: 0",
             "  unknown-server-time-limit: 200",
             "  infra-cache-max-rtt: 400",
             "  outbound-msg-retry: 1",
             "  max-sent-count: 4",
             "  serve-expired: no"]
    for name, (_, ds) in built.items():
        if ds:
            anchor = os.path.join(work, name.rstrip(".") + ".anchor")
            with open(anchor, "w") as f:
                f.write("\n".join(ds) + "\n")
            lines.append(f'  trust-anchor-file: "{anchor}"')
    for z in world.zones.values():
        if z.mode == "insecure":
            lines.append(f'  domain-insecure: "{z.name}"')
    # unbound answers names under test., invalid., onion. ... itself (RFC 6761 default
    # local zones, NXDOMAIN): lift that for every name a zone of ours falls under.
    lifted = set()
    for z in world.zones:
        labels = z.rstrip(".").split(".")
        for i in range(len(labels)):
            lifted.add(".".join(labels[i:]) + ".")
    for name in sorted(lifted):
        lines.append(f'  local-zone: "{name}" nodefault')
    lines += ["remote-control:", "  control-enable: no"]
    for z in world.zones.values():
        target = dead_port if z.mode == "dead" else nsd_port
        lines += ["stub-zone:", f'  name: "{z.name}"', f"  stub-addr: 127.0.0.1@{target}"]
    if "." not in world.zones:
        # Everything else goes to nsd too (which refuses it): no query ever leaves loopback.
        lines += ["stub-zone:", '  name: "."', f"  stub-addr: 127.0.0.1@{nsd_port}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ serve
class child:
    def __init__(self, name, args, log):
        self.name = name
        self.log = log
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=open(log, "ab"), preexec_fn=die_with_parent)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def wait_answering(c, port, name, deadline, want_flags):
    """True once `c` answers NOERROR with `want_flags` (AA for nsd, RA for unbound) to the
    SOA of `name`: some other server that got the port first answers otherwise."""
    while time.monotonic() < deadline:
        if c.p.poll() is not None:
            return False
        r = query(port, name, 6, 0.2)
        if r is not None and (not want_flags or (r[0] == 0 and r[1] & want_flags == want_flags)):
            return True
        time.sleep(0.05)
    return False


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def main(argv=None):
    p = argparse.ArgumentParser(description="Loopback DNSSEC world: nsd (signed zones) behind a validating unbound.",
                                epilog=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zone", help="zone description file ('-' for stdin)")
    p.add_argument("--dir", help="work directory (kept; default: a temp dir removed at exit)")
    p.add_argument("--port", type=int, default=0, help="unbound's port (0: a free one, printed as 'ready PORT')")
    p.add_argument("--nsd-port", type=int, default=0, help="nsd's port (0: a free one)")
    p.add_argument("--nsd", default="/usr/sbin/nsd")
    p.add_argument("--unbound", default="/usr/sbin/unbound")
    p.add_argument("--ldns-keygen", default="/usr/bin/ldns-keygen")
    p.add_argument("--ldns-signzone", default="/usr/bin/ldns-signzone")
    p.add_argument("--check", action="store_true", help="build the configs, run unbound-checkconf and nsd-checkconf, exit")
    o = p.parse_args(argv)
    text = sys.stdin.read() if o.zone == "-" else open(o.zone).read()
    world = world_spec().parse(text)

    own_dir = not o.dir
    work = os.path.abspath(o.dir) if o.dir else tempfile.mkdtemp(prefix="dnssec_world.")
    os.makedirs(work, exist_ok=True)
    children = []
    stopping = []

    def cleanup(code):
        for c in reversed(children):
            c.stop()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
        sys.stdout.flush()
        os._exit(code)

    def on_term(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        built = build_zones(world, work, o)
    except SystemExit as e:
        sys.stderr.write(f"{e}\n")
        cleanup(1)

    served = [n for n, (path, _) in built.items() if path]
    nsd_port = unbound_port = 0
    for attempt in range(1 if (o.port and o.nsd_port) else 6):
        nsd_port = o.nsd_port or free_port()
        dead_port = free_port({nsd_port})
        unbound_port = o.port or free_port({nsd_port, dead_port})
        with open(os.path.join(work, "nsd.conf"), "w") as f:
            f.write(nsd_conf(work, nsd_port, built))
        with open(os.path.join(work, "unbound.conf"), "w") as f:
            f.write(unbound_conf(work, unbound_port, nsd_port, dead_port, world, built))
        if o.check:
            run(["/usr/sbin/unbound-checkconf", os.path.join(work, "unbound.conf")], work)
            run(["/usr/sbin/nsd-checkconf", os.path.join(work, "nsd.conf")], work)
            print(f"configs in {work}", flush=True)
            cleanup(0) if own_dir else os._exit(0)
        deadline = time.monotonic() + 15
        ok = True
        if served:
            nsd = child("nsd", [o.nsd, "-d", "-c", os.path.join(work, "nsd.conf")], os.path.join(work, "nsd.stderr"))
            children.append(nsd)
            ok = wait_answering(nsd, nsd_port, served[0], deadline, 0x0400)
        if ok:
            ub = child("unbound", [o.unbound, "-d", "-c", os.path.join(work, "unbound.conf")],
                       os.path.join(work, "unbound.stderr"))
            children.append(ub)
            # Only a zone that validates (or is insecure) answers NOERROR through unbound.
            good = [z.name for z in world.zones.values() if z.mode in ("secure", "insecure") and not z.bogus]
            ok = wait_answering(ub, unbound_port, (good or served or ["ready.invalid."])[0], deadline,
                                0x0080 if good else 0)
        if ok:
            break
        for c in reversed(children):
            c.stop()
            sys.stderr.write(f"dnssec_world: {c.name} did not serve (attempt {attempt + 1}):\n"
                             + tail(c.log) + tail(os.path.join(work, c.name + ".log")))
        children.clear()
        if stopping:
            cleanup(0)
    else:
        cleanup(1)

    print(f"ready {unbound_port}", flush=True)
    sys.stderr.write(f"dnssec_world: unbound on 127.0.0.1:{unbound_port}, nsd on 127.0.0.1:{nsd_port}, "
                     f"work dir {work}\n")
    sys.stderr.flush()
    while not stopping:
        for c in children:
            if c.p.poll() is not None:
                sys.stderr.write(f"dnssec_world: {c.name} exited with {c.p.returncode}:\n"
                                 + tail(c.log) + tail(os.path.join(work, c.name + ".log")))
                cleanup(1)
        time.sleep(0.2)
    cleanup(0)


if __name__ == "__main__":
    main()
