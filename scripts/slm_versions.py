"""Valid `.slm` files laid out as models are, and versions of them
(docs/slm-format.md): what `scripts/reuse-figures.py` and the lab's
follow scenario (`lab/following.py`) build their versions from.

`model(size)` is a version 1: a tokenizer (JSON, `vocab` tokens) and 16
q8_0 tensors (the token embedding, 7 blocks of two, the output); the
same call with `extra_rows`, `changed` or `quant` makes the version 2s.
`changed_parts(old, new)` says which of the new file's parts (header,
tokenizer, tensor table, each tensor) are not in the old one whole;
`tensor_aligned(b, size)` cuts a file as `slm-parts-merkle-v0` does (each
part in pieces of `size` from its own start), and `moved_bytes` says what
a new version cut so takes from peers with the old one on disk.
"""

import hashlib
import random
import struct


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


VOCAB = 16_000
HIDDEN = 256
Q8_0, Q4_0 = 8, 9


def dtype_bytes(dtype, n):
    return {Q8_0: 34, Q4_0: 18}[dtype] * n // 32


def tokenizer_json(tokens):
    entries = ",".join(f'"tok{i:05d}":{i}' for i in range(tokens))
    return ('{"model":"synthetic-bpe","vocab":{' + entries + "}}").encode()


def build(tokenizer, tensors, quant, vocab):
    """A valid `.slm` (docs/slm-format.md): `tensors` as (name, dtype,
    dims, bytes), each at the next multiple of 64 of the data section."""
    table = bytearray()
    data = bytearray()
    for name, dtype, dims, body in tensors:
        off = align64(len(data))
        data += bytes(off - len(data)) + body
        entry = bytearray(128)
        entry[0] = len(name)
        entry[1:1 + len(name)] = name.encode()
        entry[0x40], entry[0x41] = dtype, len(dims)
        struct.pack_into("<4Q", entry, 0x48, *(list(dims) + [0] * (4 - len(dims))))
        struct.pack_into("<QQ", entry, 0x68, off, len(body))
        table += entry
    tab_off = align64(256 + len(tokenizer))
    data_off = align64(tab_off + len(table))
    header = bytearray(256)
    header[0:8] = b"\x7fMINISLM"
    header[0x0A] = quant
    struct.pack_into("<5I", header, 0x10, 7, HIDDEN, 8, vocab, 4096)
    struct.pack_into("<I", header, 0x24, len(tensors))
    struct.pack_into("<Q", header, 0x28, data_off + len(data))
    struct.pack_into("<QQ", header, 0x30, 256, len(tokenizer))
    header[0x40:0x60] = hashlib.sha256(tokenizer).digest()
    struct.pack_into("<QQ", header, 0x60, tab_off, len(table))
    header[0x70:0x90] = hashlib.sha256(table).digest()
    struct.pack_into("<QQ", header, 0x90, data_off, len(data))
    out = header + tokenizer
    out += bytes(tab_off - len(out)) + table
    out += bytes(data_off - len(out)) + data
    return bytes(out)


def model(size, vocab=VOCAB, quant=Q8_0, seed=7, changed=(), extra_rows=0):
    """Version 1 (and the version 2s that change tensors): the embedding
    and output of `vocab` (+ `extra_rows`) rows, 7 blocks of an attention
    and a feed-forward tensor sized so that the model fills `size` bytes at
    q8_0; tensors named in `changed` get other bytes, and at another
    `quant` every tensor is the same parameters quantized again (other
    bytes, another length: q4_0 is about half the file)."""
    # The same parameters at every quantization: sized at q8_0.
    per_block = (size - 2 * dtype_bytes(Q8_0, vocab * HIDDEN)) // 14
    rows = max(1, per_block // dtype_bytes(Q8_0, 32 * HIDDEN)) * 32
    names = ["token_embd.weight"]
    for i in range(7):
        names += [f"blk.{i}.attn.weight", f"blk.{i}.ffn.weight"]
    names.append("output.weight")
    tensors = []
    for name in names:
        vocab_rows = name in ("token_embd.weight", "output.weight")
        dims = (vocab + (extra_rows if vocab_rows else 0) if vocab_rows else rows, HIDDEN)
        rng = random.Random(f"{seed}-{name}-{quant}-{name in changed}")
        body = rng.randbytes(dtype_bytes(quant, (vocab if vocab_rows else rows) * HIDDEN))
        if vocab_rows and extra_rows:
            body += random.Random(f"{seed}-{name}-new").randbytes(
                dtype_bytes(quant, extra_rows * HIDDEN))
        tensors.append((name, quant, dims, body))
    return build(tokenizer_json(vocab + extra_rows), tensors, quant, vocab + extra_rows)


def parts(b):
    """The parts of `.slm` bytes `b` as (name, offset, length): the header,
    the tokenizer, the tensor table and each tensor, in file order."""
    tok, tab, data, tensors = layout(b)
    found = [("header", 0, 256), ("tokenizer", *tok), ("tensor table", *tab)]
    found += [(name, data[0] + off, ln) for name, off, ln in tensors]
    return found


def changed_parts(old, new):
    """The parts of `new` whose bytes are no part of `old`, as (name,
    length): what a version 2 cut at its parts must move."""
    have = {hashlib.sha256(old[o:o + n]).digest() for _, o, n in parts(old)}
    return [(name, n) for name, o, n in parts(new)
            if hashlib.sha256(new[o:o + n]).digest() not in have]


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


def moved_bytes(old, new, size):
    """What a download of `new` cut at its parts in chunks of `size` takes
    from peers with `old` on disk: (the bytes of its chunks that are no
    chunk of `old` cut the same way, how many of its chunks are)."""
    have = {hashlib.sha256(p).digest() for p in pieces(old, tensor_aligned(old, size))}
    kept = [p for p in pieces(new, tensor_aligned(new, size))
            if hashlib.sha256(p).digest() in have]
    return len(new) - sum(len(p) for p in kept), len(kept)
