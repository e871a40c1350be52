#!/usr/bin/python3
"""Verify a message's DKIM signatures with dkimpy (Debian python3-dkim), the independent
verifier of tests/unit/dkim: the public key comes from a file holding the TXT record
text ("v=DKIM1; k=rsa; p=..."), handed to dkimpy through its dnsfunc, so no DNS is asked.

usage: dkim_verify.py TXT_FILE < message
Exit 0 when every DKIM-Signature verifies, 1 when one does not (dkimpy's reason on
stderr), 77 when dkimpy (or PyNaCl, for Ed25519) is missing.
Uses /usr/bin/python3 on purpose: the Debian package is installed for the system Python.
"""
import sys

try:
    import dkim
except ImportError:
    print("dkim_verify: python3-dkim (dkimpy) is not installed", file=sys.stderr)
    sys.exit(77)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], 'rb') as f:
        txt = f.read().strip()

    asked = []

    def dnsfunc(name, timeout=5):
        asked.append(name)
        return txt

    message = sys.stdin.buffer.read()
    d = dkim.DKIM(message)
    count = message.count(b'DKIM-Signature:') or 1
    ok = True
    for i in range(count):
        try:
            good = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.NaClNotFoundError:
            print("dkim_verify: PyNaCl (python3-nacl) is missing for ed25519", file=sys.stderr)
            return 77
        except dkim.DKIMException as e:
            print(f"dkim_verify: signature {i}: {e}", file=sys.stderr)
            good = False
        if not good:
            ok = False
            print(f"dkim_verify: signature {i} does not verify; asked {asked}", file=sys.stderr)
    if ok:
        print(f"dkim_verify: ok ({count} signature(s); key asked as {asked})")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
