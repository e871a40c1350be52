#!/usr/bin/env python3
"""Checks of the man pages (docs/man/, issue 13), run by meson test.

  check_man.py options PAGE.scd BINARY [--source MAIN.cc]
      Every option BINARY's usage text prints (BINARY --help, stdout and stderr, whatever
      its exit status) and every option MAIN.cc compares an argument with (a == "--x") must
      appear in bold (*--x*) on PAGE.scd, and every option in bold in the page's OPTIONS
      section must be one of them. Fails naming each one missing or stale.

  check_man.py lint PAGE...
      Each built page must render without a groff warning (groff -ww -man -z), and, when
      mandoc is installed, without a mandoc error or warning other than the empty-paragraph
      notes scdoc's output always draws.
"""
import os
import re
import shutil
import subprocess
import sys

# "-c", "--check-config"; not the "-check" inside "sealrelay-check" or "-Blast" in "X-Blast-Ts".
OPTION_RE = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
PARSED_RE = re.compile(r'\ba == "(--?[A-Za-z][\w-]*)"')
BOLD_OPTION_RE = re.compile(r"\*(--?[A-Za-z][\w-]*)\*")


def usage_options(binary):
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20, env=env)
    text = p.stdout + p.stderr
    if "usage" not in text.lower():
        sys.exit(f"{binary} --help printed no usage text (exit {p.returncode}):\n{text}")
    return set(OPTION_RE.findall(text)), text


def check_options(page, binary, source):
    with open(page, encoding="utf-8") as f:
        scd = f.read()
    found, text = usage_options(binary)
    where = {o: f"{os.path.basename(binary)} --help" for o in found}
    if source:
        with open(source, encoding="utf-8") as f:
            for o in PARSED_RE.findall(f.read()):
                where.setdefault(o, os.path.relpath(source))
    if len(where) < 2:
        sys.exit(f"found only {sorted(where)} in {binary}'s usage: is the option pattern wrong?\n{text}")
    missing = sorted(o for o in where if f"*{o}*" not in scd)
    for o in missing:
        print(f"{page}: option {o} ({where[o]}) is not documented (no *{o}* on the page)")
    # The other way: an option the page's OPTIONS section names that the program neither
    # prints nor parses is stale.
    section = re.search(r"^# OPTIONS\n(.*?)(?=^# )", scd, re.S | re.M)
    stale = sorted(set(BOLD_OPTION_RE.findall(section.group(1) if section else "")) - set(where))
    for o in stale:
        print(f"{page}: OPTIONS documents {o}, which {os.path.basename(binary)} neither prints nor parses")
    if not section:
        print(f"{page}: no '# OPTIONS' section")
    if missing or stale or not section:
        return 1
    print(f"{os.path.basename(page)}: all {len(where)} options documented: {' '.join(sorted(where))}")
    return 0


def lint(pages):
    bad = 0
    mandoc = shutil.which("mandoc")
    for page in pages:
        g = subprocess.run(["groff", "-ww", "-man", "-z", page], capture_output=True, text=True,
                           timeout=60)
        if g.returncode != 0 or g.stderr.strip():
            print(f"{page}: groff -ww: exit {g.returncode}\n{g.stderr}")
            bad += 1
        if mandoc:
            m = subprocess.run([mandoc, "-T", "lint", "-W", "warning", page], capture_output=True,
                               text=True, timeout=60)
            lines = [l for l in (m.stdout + m.stderr).splitlines()
                     if l.strip() and "skipping paragraph macro" not in l]
            if lines:
                print(f"{page}: mandoc -T lint:\n" + "\n".join(lines))
                bad += 1
        if os.path.getsize(page) < 500:
            print(f"{page}: suspiciously small ({os.path.getsize(page)} bytes): did scdoc fail?")
            bad += 1
    print(f"{len(pages)} pages, {bad} with problems{'' if mandoc else ' (mandoc not installed: groff only)'}")
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "options":
        source = None
        rest = argv[2:]
        if "--source" in rest:
            i = rest.index("--source")
            source = rest[i + 1]
            rest = rest[:i] + rest[i + 2:]
        if len(rest) != 2:
            sys.exit(__doc__)
        return check_options(rest[0], rest[1], source)
    if len(argv) >= 3 and argv[1] == "lint":
        return lint(argv[2:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
