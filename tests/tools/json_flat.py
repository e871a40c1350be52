#!/usr/bin/python3
# json_flat: read one JSON document (strictly: the whole file, nothing after it) and print
# every scalar as PATH=VALUE, one a line, so C++ tests can check nested JSON without a
# parser of their own. PATH joins object keys and array indexes with '.'
# ("mx.hosts.0.name"); VALUE is the JSON text of the scalar ("\"x\"", 3, true, null); empty
# arrays and objects print PATH=[] / PATH={}. Exit 1 with the error when it does not parse.
# Python 3.11 standard library only.
import json
import sys


def walk(v, path, out):
    if isinstance(v, dict):
        if not v:
            out.append(f"{path}={{}}")
        for k, x in v.items():
            walk(x, f"{path}.{k}" if path else k, out)
    elif isinstance(v, list):
        if not v:
            out.append(f"{path}=[]")
        for i, x in enumerate(v):
            walk(x, f"{path}.{i}" if path else str(i), out)
    else:
        out.append(f"{path}={json.dumps(v)}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: json_flat.py FILE")
    text = open(sys.argv[1], encoding="utf-8").read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"json_flat: {e}", file=sys.stderr)
        sys.exit(1)
    out = []
    walk(doc, "", out)
    print("\n".join(out))


main()
