#!/usr/bin/env python3
"""Counts code lines of Rust files: no blank lines, no comment lines, no
`#[cfg(test)]` items (a test module inline or in a file of its own), no test
files (`tests/`, `tests.rs`, `*_tests.rs`).

    scripts/code-lines.py                 # the driver, the core, their ratio
    scripts/code-lines.py NAME=PATH,...   # any groups of files or folders
"""
import os, re, sys

def strip_tests(lines):
    out, skip_depth, pending = [], None, False
    depth = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if skip_depth is None and s.startswith("#[cfg(test)]"):
            # skip the next item: until its braces close (or a `;` item)
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("#["):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith(";"):
                i = j + 1
                continue
            d = 0; started = False
            while j < len(lines):
                d += lines[j].count("{") - lines[j].count("}")
                if "{" in lines[j]: started = True
                j += 1
                if started and d <= 0:
                    break
            i = j
            continue
        out.append(line)
        i += 1
    return out

def count(path):
    with open(path) as f:
        lines = f.read().split("\n")
    n = 0
    in_block = False
    for line in strip_tests(lines):
        s = line.strip()
        if in_block:
            if "*/" in s: in_block = False
            continue
        if not s or s.startswith("//"):
            continue
        if s.startswith("/*"):
            if "*/" not in s: in_block = True
            continue
        n += 1
    return n

def files(root):
    if os.path.isfile(root):
        yield root; return
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ("tests",)]
        for f in fs:
            if f.endswith(".rs") and not f.endswith("_tests.rs") and f != "tests.rs":
                yield os.path.join(d, f)

# The driver and the core as docs/swarm.md ("The node core") counts them.
DEFAULT = [
    "driver=swarm/src/node,swarm/src/link,swarm/src/fetch.rs,swarm/src/seed.rs",
    "core=" + ",".join(
        os.path.join("node/src", name)
        for name in sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "node/src")))
        if name not in ("netsim", "netsim.rs", "testing.rs")
    ),
]

def main(args):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    os.chdir(root)
    groups = {}
    for arg in args or DEFAULT:
        name, paths = arg.split("=")
        groups[name] = sum(count(f) for p in paths.split(",") for f in files(p))
    for name, lines in groups.items():
        print(f"{name} {lines}")
    if not args:
        print(f"driver/core {groups['driver'] / groups['core']:.2f}")

if __name__ == "__main__":
    main(sys.argv[1:])
