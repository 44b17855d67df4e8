#!/usr/bin/env python3
"""How much of a new version a download copies from the old one on disk.

Builds a version 1: a valid `.slm` of about SIZE bytes laid out as models
are, a tokenizer (JSON, VOCAB tokens) and 16 q8_0 tensors (the token
embedding, 7 blocks of two, the output), then seven version 2s, one edit
each that keeps a valid `.slm`: a changed header field, a changed tensor
in the middle, an appended section, 1,000 bytes inserted near the start,
the tokenizer grown by 1,000 tokens (the embedding and output grown by
their rows, as adding tokens does), 4 of the 16 tensors changed (two
blocks, as a fine-tune of some layers), and every tensor quantized again
to q4_0 (nothing left to share). Each v2 is fetched from a local seeder
with `minimodel fetch --reuse v1.slm --chunk-list v2.chunk-list`, once
with the manifest's chunks fixed-size and once cut at the file's parts
(`--chunk-scheme slm-parts-merkle-v0`): the receipt's `chunks_reused`
and the bytes the peers sent are the figures (docs/swarm.md, "Reusing
older versions").

For comparison it also computes, without the binary, what two chunkings
would have kept, in bytes of v2 found whole in v1: tensor-aligned (each
section and each tensor cut in chunk-size pieces from its own start: what
slm-parts-merkle-v0 does, computed independently) and content-defined
with Xet's parameters (a gear rolling hash cut where its top 16 bits are
zero: 64 KiB on average, at least 8 KiB, at most 128 KiB).

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slm_versions import (  # noqa: E402
    Q4_0, VOCAB, align64, layout, model, pieces, tensor_aligned,
)

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/minimodel"
SIZE = sys.argv[2] if len(sys.argv) > 2 else "64MiB"
V1_SIZE = int(SIZE[:-3]) << {"KiB": 10, "MiB": 20, "GiB": 30}[SIZE[-3:]]


def run(*args):
    subprocess.run([BIN, *args], check=True, stdout=subprocess.DEVNULL)


def grown_tokenizer(_b):
    return model(V1_SIZE, extra_rows=1000)


def four_tensors_changed(_b):
    return model(V1_SIZE, changed={"blk.2.attn.weight", "blk.2.ffn.weight",
                                   "blk.3.attn.weight", "blk.3.ffn.weight"})


def quantized_again(_b):
    return model(V1_SIZE, quant=Q4_0)


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
    ("a changed header field (context)", changed_header),
    ("a changed tensor in the middle", changed_tensor),
    ("an appended 4 MiB section", appended_section),
    ("1,000 bytes inserted near the start (tokenizer)", inserted_near_start),
    ("the tokenizer grown by 1,000 tokens (embedding and output rows too)", grown_tokenizer),
    ("4 of 16 tensors changed (two blocks)", four_tensors_changed),
    ("every tensor quantized again (q8_0 to q4_0)", quantized_again),
]


def manifest(dir, slm, model_id, scheme):
    path = os.path.join(dir, model_id + ".manifest")
    run("manifest", slm, "--model-id", model_id, "--publisher-id", "acme",
        "--license-route", "https://example.org/license",
        "--evidence-route", "https://example.org/evidence",
        "--chunk-list-route", "https://example.org/chunk-list",
        "--chunk-list-out", os.path.join(dir, model_id + ".list"),
        "--chunk-scheme", scheme,
        "-o", path)
    return path


def fetch_with_reuse(dir, v1, v2, model_id, scheme):
    m = manifest(dir, v2, model_id, scheme)
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


_GEAR_RNG = random.Random(3)
GEAR = [_GEAR_RNG.getrandbits(64) for _ in range(256)]


def content_defined(b, avg=64 << 10, low=8 << 10, high=128 << 10):
    """Cut points of a gear rolling hash with Xet's parameters."""
    shift = 64 - (avg.bit_length() - 1)
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
        old = model(V1_SIZE)
        open(v1, "wb").write(old)
        tok, _, _, tensors = layout(old)
        print(f"v1: {len(old) / 2**20:.1f} MiB, a tokenizer of {VOCAB} tokens "
              f"({tok[1]} bytes), {len(tensors)} q8_0 tensors")
        old_cdc = {hashlib.sha256(p).digest() for p in pieces(old, content_defined(old))}
        print("| v2 made by | fixed-size: chunks reused | fixed-size: from peers "
              "| slm-parts: chunks reused | slm-parts: from peers (bytes kept) "
              "| tensor-aligned, computed | content-defined (Xet), computed |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for n, (name, edit) in enumerate(EDITS):
            new = edit(old)
            v2 = os.path.join(dir, f"v2-{n}.slm")
            open(v2, "wb").write(new)
            row = [name]
            for scheme in ("fixed-size-merkle-v0", "slm-parts-merkle-v0"):
                tag = "parts" if scheme.startswith("slm") else "fixed"
                count, size, reused, from_peers = fetch_with_reuse(
                    dir, v1, v2, f"tiny-v2-{n}-{tag}", scheme)
                row.append(f"{reused}/{count} ({reused / count:.1%}) at {size // 1024} KiB")
                kept = "" if tag == "fixed" else f" ({1 - from_peers / len(new):.2%})"
                row.append(f"{from_peers / 2**20:.2f} of {len(new) / 2**20:.1f} MiB{kept}")
            aligned = reused_fraction(old, new, lambda b: tensor_aligned(b, size))
            new_cdc = pieces(new, content_defined(new))
            cdc = sum(len(p) for p in new_cdc if hashlib.sha256(p).digest() in old_cdc) / len(new)
            row += [f"{aligned:.2%} of bytes", f"{cdc:.2%} of bytes"]
            print("| " + " | ".join(row) + " |", flush=True)
        shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    main()
