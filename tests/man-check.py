#!/usr/bin/env python3
"""The man pages say what --help says: every flag of `forkpoold --help` is an
option of forkpoold(8) and every option there is a flag; every command of
`forkpool --help` has its entry in forkpool(1), each command's options in
`forkpool CMD --help` are the ones its entry lists, and every option of any
command is described under OPTIONS, and the other way round.

Reads the scdoc sources (docs/*.scd), so it runs without scdoc installed.
"""
import argparse
import re
import subprocess
import sys

FLAG = re.compile(r"--[a-z][a-z0-9-]*")
failures = []


def check(what, in_help, in_man, page):
    for f in sorted(in_help - in_man):
        failures.append(f"{what}: {f} is in --help but not in {page}")
    for f in sorted(in_man - in_help):
        failures.append(f"{what}: {f} is in {page} but not in --help")


def run_help(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        sys.exit(f"man-check: {' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def help_flags(text, section=None):
    """Flags that head an option line ("  --flag ARG   what it does"); with a
    section, only those under that heading (up to the next blank line)."""
    if section:
        m = re.search(r"^" + re.escape(section) + r"\n((?:.+\n)*)", text, re.M)
        text = m.group(1) if m else ""
    flags = set()
    for line in text.splitlines():
        m = re.match(r"  (?:-[a-z], )?(--[a-z][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    return flags


def sections(scd):
    """{heading: text} of an scdoc page."""
    out, name = {}, None
    for line in scd.splitlines():
        if line.startswith("# "):
            name = line[2:].strip()
            out[name] = []
        elif name:
            out[name].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def man_options(text):
    """Options an scdoc OPTIONS section describes: its entries' first lines
    (`*--flag* _ARG_`, `*-q*, *--quiet*`)."""
    flags = set()
    for line in text.splitlines():
        if line.startswith("*-"):
            flags |= set(FLAG.findall(line))
    return flags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forkpoold", required=True)
    ap.add_argument("--forkpool", required=True)
    ap.add_argument("--docs", required=True, help="the source tree's docs/")
    a = ap.parse_args()

    # forkpoold(8): the OPTIONS section against --help.
    page = "docs/forkpoold.8.scd"
    with open(f"{a.docs}/forkpoold.8.scd") as f:
        man = sections(f.read())
    check("forkpoold", help_flags(run_help([a.forkpoold, "--help"])),
          man_options(man.get("OPTIONS", "")), page)

    # forkpool(1): commands, each command's options, all options.
    page = "docs/forkpool.1.scd"
    with open(f"{a.docs}/forkpool.1.scd") as f:
        man = sections(f.read())
    top = run_help([a.forkpool, "--help"])
    m = re.search(r"^Commands:\n((?:  .+\n)+)", top, re.M)
    if not m:
        sys.exit("man-check: no Commands: list in forkpool --help")
    commands = [line.split()[0] for line in m.group(1).splitlines()]
    entries = {}
    for block in re.split(r"\n(?=\*[a-z])", man.get("COMMANDS", "")):
        m = re.match(r"\*([a-z]+)\*", block.strip())
        if m:
            entries[m.group(1)] = block
    check("forkpool commands", set(commands), set(entries), page)
    all_help = {"--version"} | help_flags(top)
    for cmd in commands:
        text = run_help([a.forkpool, cmd, "--help"])
        own = help_flags(text, "Options:")
        all_help |= help_flags(text)
        listed = set()
        m = re.search(r"Options:(.*)", entries.get(cmd, ""), re.S)
        if m:
            listed = set(FLAG.findall(m.group(1)))
        # "those of map but --chunksize, and ...": the entry may say it by reference.
        m = re.search(r"those of \*([a-z]+)\* but ([^,]*), and", entries.get(cmd, ""))
        if m and m.group(1) in entries:
            base = set(FLAG.findall(re.search(r"Options:(.*)", entries[m.group(1)], re.S).group(1)))
            listed = (listed | base) - set(FLAG.findall(m.group(2)))
        check(f"forkpool {cmd}", own, listed, page + " (COMMANDS)")
    check("forkpool options", all_help, man_options(man.get("OPTIONS", "")), page + " (OPTIONS)")

    for f in failures:
        print("man-check:", f, file=sys.stderr)
    if failures:
        return 1
    print("man-check: both man pages agree with --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
