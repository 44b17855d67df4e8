#!/usr/bin/env python3
"""How much of a new version a download copies from the old one on disk.

Makes a version 1 with `minimodel fixture`, four version 2s by one edit
each (a changed header field, a changed tensor in the middle, an appended
section, bytes inserted near the start), keeps each a valid `.slm`, and
fetches each v2 from a local seeder with `minimodel fetch --reuse v1.slm
--chunk-list v2.chunk-list`: the receipt's `chunks_reused` and the bytes
the peers sent are the figures (docs/swarm.md, "Reusing older versions").

For comparison it also computes, without the binary, what two other
chunkings would have reused: tensor-aligned (each section and each tensor
cut in chunk-size pieces from its own start) and content-defined (a gear
rolling hash, cut points where its top bits are zero, average near the
chunk size, min 1/4, max 4x).

Usage: scripts/reuse-figures.py [path/to/minimodel] [size, default 64MiB]
"""

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/minimodel"
SIZE = sys.argv[2] if len(sys.argv) > 2 else "64MiB"


def run(*args):
    subprocess.run([BIN, *args], check=True, stdout=subprocess.DEVNULL)


def layout(b):
    """(tokenizer, table, data) (offset, len) and the tensors (name, off, len)."""
    tc, = struct.unpack_from("<I", b, 0x24)
    tok = struct.unpack_from("<QQ", b, 0x30)
    tab = struct.unpack_from("<QQ", b, 0x60)
    data = struct.unpack_from("<QQ", b, 0x90)
    tensors = []
    for i in range(tc):
        e = b[tab[0] + 128 * i: tab[0] + 128 * (i + 1)]
        off, ln = struct.unpack_from("<QQ", e, 0x68)
        tensors.append((e[1:1 + e[0]].decode(), off, ln))
    return tok, tab, data, tensors


def align64(x):
    return (x + 63) // 64 * 64


def changed_header(b):
    b = bytearray(b)
    ctx, = struct.unpack_from("<I", b, 0x20)
    struct.pack_into("<I", b, 0x20, ctx * 2)
    return bytes(b)


def changed_tensor(b):
    _, _, data, tensors = layout(b)
    name, off, ln = tensors[len(tensors) // 2]
    b = bytearray(b)
    start = data[0] + off
    rng = random.Random(1)
    b[start:start + ln] = rng.randbytes(ln)
    return bytes(b)


def appended_section(b, extra=4 << 20):
    b = bytearray(b) + random.Random(2).randbytes(extra)
    file_len, = struct.unpack_from("<Q", b, 0x28)
    data_len, = struct.unpack_from("<Q", b, 0x98)
    struct.pack_into("<Q", b, 0x28, file_len + extra)
    struct.pack_into("<Q", b, 0x98, data_len + extra)
    return bytes(b)


def inserted_near_start(b, extra=1000):
    """`extra` bytes more tokenizer: everything after it moves."""
    tok, tab, data, _ = layout(b)
    tokenizer = b[tok[0]:tok[0] + tok[1]] + b"x" * extra
    table = b[tab[0]:tab[0] + tab[1]]
    body = b[data[0]:data[0] + data[1]]
    header = bytearray(b[:256])
    new_tab = align64(256 + len(tokenizer))
    new_data = align64(new_tab + len(table))
    struct.pack_into("<QQ", header, 0x30, 256, len(tokenizer))
    header[0x40:0x60] = hashlib.sha256(tokenizer).digest()
    struct.pack_into("<Q", header, 0x60, new_tab)
    struct.pack_into("<Q", header, 0x90, new_data)
    struct.pack_into("<Q", header, 0x28, new_data + len(body))
    out = bytearray(header) + tokenizer
    out += bytes(new_tab - len(out)) + table
    out += bytes(new_data - len(out)) + body
    return bytes(out)


EDITS = [
    ("a changed header field", changed_header),
    ("a changed tensor in the middle", changed_tensor),
    ("an appended 4 MiB section", appended_section),
    ("1000 bytes inserted near the start", inserted_near_start),
]


def manifest(dir, slm, model_id):
    path = os.path.join(dir, model_id + ".manifest")
    run("manifest", slm, "--model-id", model_id, "--publisher-id", "acme",
        "--license-route", "https://example.org/license",
        "--evidence-route", "https://example.org/evidence",
        "--chunk-list-route", "https://example.org/chunk-list",
        "--chunk-list-out", os.path.join(dir, model_id + ".list"),
        "-o", path)
    return path


def fetch_with_reuse(dir, v1, v2, model_id):
    m = manifest(dir, v2, model_id)
    offer = os.path.join(dir, model_id + ".offer.json")
    seeder = subprocess.Popen(
        [BIN, "seed", m, v2, "--listen", "127.0.0.1:0", "--yes", "--offer", offer],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if os.path.exists(offer):
                break
            time.sleep(0.1)
        out = os.path.join(dir, "out-" + model_id)
        run("fetch", m, "--offer", offer, "-o", out, "--yes",
            "--reuse", v1, "--chunk-list", os.path.join(dir, model_id + ".list"))
    finally:
        seeder.terminate()
        seeder.wait()
    receipt = json.load(open(os.path.join(out, model_id + ".receipt.json")))
    source = receipt["source"]
    from_peers = sum(p["bytes"] for p in source["peers"])
    return receipt["chunk_count"], receipt["chunk_size"], source["chunks_reused"], from_peers


def pieces(b, cuts):
    """Chunks of `b` between the cut offsets (sorted, 0 and len(b) included)."""
    return [b[s:e] for s, e in zip(cuts, cuts[1:]) if e > s]


def fixed(b, size, start=0, end=None):
    end = len(b) if end is None else end
    return list(range(start, end, size)) + [end]


def tensor_aligned(b, size):
    tok, tab, data, tensors = layout(b)
    cuts = {0, len(b)}
    for off, ln in [(0, 256), tok, tab]:
        cuts.update(fixed(b, size, off, off + ln))
    for _, off, ln in tensors:
        cuts.update(fixed(b, size, data[0] + off, data[0] + off + ln))
    return sorted(cuts)


_GEAR_RNG = random.Random(3)
GEAR = [_GEAR_RNG.getrandbits(64) for _ in range(256)]


def content_defined(b, size):
    mask_bits = size.bit_length() - 1
    shift = 64 - mask_bits
    low, high = size // 4, size * 4
    cuts = [0]
    h = 0
    last = 0
    gear = GEAR
    m = (1 << 64) - 1
    for i, byte in enumerate(b):
        h = ((h << 1) + gear[byte]) & m
        n = i + 1 - last
        if n >= low and (h >> shift == 0 or n >= high):
            cuts.append(i + 1)
            last = i + 1
            h = 0
    if cuts[-1] != len(b):
        cuts.append(len(b))
    return cuts


def reused_fraction(old, new, cut):
    have = {hashlib.sha256(p).digest() for p in pieces(old, cut(old))}
    new_pieces = pieces(new, cut(new))
    kept = sum(len(p) for p in new_pieces if hashlib.sha256(p).digest() in have)
    return kept / len(new)


def main():
    with tempfile.TemporaryDirectory() as dir:
        v1 = os.path.join(dir, "v1.slm")
        run("fixture", v1, "--size", SIZE, "--seed", "7")
        old = open(v1, "rb").read()
        print(f"v1: {SIZE} fixture, {len(layout(old)[3])} tensors")
        print("| v2 made by | chunks reused | bytes from peers | tensor-aligned | content-defined |")
        print("| --- | --- | --- | --- | --- |")
        for n, (name, edit) in enumerate(EDITS):
            new = edit(old)
            v2 = os.path.join(dir, f"v2-{n}.slm")
            open(v2, "wb").write(new)
            count, size, reused, from_peers = fetch_with_reuse(dir, v1, v2, f"tiny-v2-{n}")
            aligned = reused_fraction(old, new, lambda b: tensor_aligned(b, size))
            cdc = ""
            if edit is inserted_near_start:
                cdc = f"{reused_fraction(old, new, lambda b: content_defined(b, size)):.2%} of bytes"
            print(f"| {name} | {reused}/{count} ({reused / count:.1%}) at {size // 1024} KiB "
                  f"| {from_peers / 2**20:.1f} MiB of {len(new) / 2**20:.1f} MiB "
                  f"| {aligned:.2%} of bytes | {cdc} |")
        shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    main()
