#!/usr/bin/env python3
"""The lab's check of its own checks: runs a command, and once it has
exited 0 changes the file it delivered, after its receipt was written.
`check-catches-tamper` (lab/lab.py) runs a fetch through it and fails
unless the lab's download check finds the change.

    tamper.py flip|truncate|remove FILE -- COMMAND [ARG...]

flip: one bit of the middle byte is inverted (same size, same receipt);
truncate: the last byte is cut; remove: the file is deleted. Exits with
the command's exit code; a command that failed is left as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys


def tamper(how, path):
    if how == "remove":
        os.remove(path)
        return
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "truncate":
            f.truncate(size - 1)
            return
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0x01]))


def main(argv):
    if len(argv) < 4 or argv[0] not in ("flip", "truncate", "remove") or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    how, path, command = argv[0], argv[1], argv[3:]
    code = subprocess.run(command).returncode
    if code == 0:
        tamper(how, path)
        print(f"tamper: {how} {path}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
