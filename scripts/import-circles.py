#!/usr/bin/env python3
"""Import circles between the top-level modules of a crate.

    scripts/import-circles.py [CRATE_SRC ...]   (default: node/src swarm/src)
    scripts/import-circles.py --self-test       (CI runs it first)

A crate's top-level modules form layers (README.md, "Layout"): a module
may use the modules below it, never one that uses it back, directly or
through others. This reads every `.rs` file of the crate, maps it to its
top-level module (`node/src/download/mirrors.rs` is `download`), and takes
an edge A -> B wherever A's code names `crate::B` (in a path or in a `use
crate::{B, ...}` group), names an item the crate root re-exports from B
(`crate::Item`, with `pub use B::Item` in lib.rs), or reaches B through
`super::` from a file of A. Comments and the insides of string and
character literals are read as blank. Limits: `super::` is counted from
the file's own module, so one inside an inline `mod` block is misread
(there are none outside tests), and a glob `use super::*` from a
top-level file is not followed. Test code is left out: modules declared
under `#[cfg(test)]`, files named `tests.rs` or `*_tests.rs` and files
under a `tests/` directory, and items after a `#[cfg(test)]` attribute. Every strongly connected set of two or
more modules is printed with its edges and where each is made; exit 1 if
there is one, 0 if there is none, 2 if a directory is missing.
Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PATH = re.compile(r"(?<![A-Za-z0-9_$])((?:super::)+|crate::)(\{|[A-Za-z_][A-Za-z0-9_]*)")


def code_only(text: str) -> str:
    """`text` with comments removed and the insides of string and
    character literals blanked (newlines kept, so line numbers hold)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        two = text[i:i + 2]
        if two == "//":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif two == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text[j:j + 2] == "/*":
                    depth, j = depth + 1, j + 2
                elif text[j:j + 2] == "*/":
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif ch == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"[A-Za-z0-9_]", text[i - 1:i] or " "):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = text.find('"' + "#" * hashes, i + 2 + hashes)
            j = n if end < 0 else end + 1 + hashes
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif ch == "'":
            literal = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if literal:
                out.append("' '")
                i += literal.end()
            else:  # a lifetime
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def root_reexports(lib: str) -> dict[str, str]:
    """Item name -> the top-level module it comes from, for every `pub use
    module::...` of the crate root (groups included)."""
    found = {}
    for use in re.finditer(r"pub(?:\([a-z]+\))?\s+use\s+([a-z_][a-z0-9_]*)::([^;]*);", lib):
        module, rest = use.group(1), use.group(2)
        for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:[,}]|$)", rest):
            found[name] = module
        for name in re.findall(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)", rest):
            found[name] = module
    return found


def module_path(src: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return []
    return parts


def test_only(src: Path, file: Path, test_modules: set[str]) -> bool:
    rel = file.relative_to(src)
    if rel.parts[0].removesuffix(".rs") in test_modules:
        return True
    return (
        "tests" in rel.parts[:-1]
        or rel.name == "tests.rs"
        or rel.name.endswith("_tests.rs")
    )


def without_tests(text: str) -> str:
    """The code of `text` (`code_only`) with every item after
    `#[cfg(test)]` blanked out (its braces counted; a `mod name;` ends at
    its semicolon)."""
    text = code_only(text)
    out = []
    i = 0
    marker = "#[cfg(test)]"
    while True:
        j = text.find(marker, i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = j + len(marker)
        depth = 0
        while k < len(text):
            ch = text[k]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            elif ch == ";" and depth == 0:
                k += 1
                break
            k += 1
        i = k


def group_heads(text: str, start: int) -> list[str]:
    """The first segment of each path in a `{...}` group opening at
    `start`."""
    depth = 0
    heads = []
    expect = True
    k = start
    while k < len(text):
        ch = text[k]
        if ch == "{":
            depth += 1
            expect = depth == 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            expect = True
        elif expect and depth == 1 and not ch.isspace():
            found = IDENT.match(text, k)
            if found:
                heads.append(found.group(0))
                k = found.end()
                expect = False
                continue
            expect = False
        k += 1
    return heads


def edges_of(src: Path) -> dict[str, dict[str, list[str]]]:
    lib = code_only((src / "lib.rs").read_text())
    reexported = root_reexports(lib)
    test_modules = set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)", lib))
    top = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)", lib, re.M))
    top -= test_modules
    edges: dict[str, dict[str, list[str]]] = {name: {} for name in top}
    for file in sorted(src.rglob("*.rs")):
        path = module_path(src, file)
        if not path or path[0] not in top or test_only(src, file, test_modules):
            continue
        owner = path[0]
        text = without_tests(file.read_text())
        for found in PATH.finditer(text):
            prefix, head = found.group(1), found.group(2)
            if prefix == "crate::":
                depth_left = 0
            else:
                ups = prefix.count("super::")
                # The module a `super::` path starts from is the file's own.
                depth_left = len(path) - ups
                if depth_left < 0:
                    continue
            if depth_left > 0:
                continue  # still inside a module of this file's own top module
            heads = group_heads(text, found.start(2)) if head == "{" else [head]
            line = text.count("\n", 0, found.start()) + 1
            for name in heads:
                if name not in top:
                    name = reexported.get(name, name)
                if name in top and name != owner:
                    where = f"{file}:{line}"
                    edges[owner].setdefault(name, []).append(where)
    return edges


def circles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def self_test() -> int:
    """Builds small crates in a temporary directory and checks what is
    found in each: a circle through a `use crate::{...}` group and a
    `super::super::` path, none when the only way back is test code or a
    comment, and one through a `crate::` path inside a function."""
    import tempfile

    cases = {
        "group and super": ({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a/mod.rs": "mod inner;\n",
            "a/inner.rs": "use crate::{b::Thing, a::Other};\n",
            "b/mod.rs": "pub struct Thing;\nmod deep;\n",
            "b/deep.rs": "fn f() { super::super::a::g(); super::Thing; }\n",
        }, [["a", "b"]]),
        "test code only": ({
            "lib.rs": "pub mod a;\npub mod b;\n#[cfg(test)]\nmod testing;\n",
            "a.rs": "use crate::b::Thing;\n",
            "b.rs": "pub struct Thing;\n// crate::a is named in a comment\n"
                    "#[cfg(test)]\nmod tests {\n    use crate::a::f;\n}\n",
            "b/tests.rs": "use crate::a::f;\n",
            "testing.rs": "use crate::a::f;\nuse crate::b::Thing;\n",
        }, []),
        "a root re-export, and paths in strings": ({
            "lib.rs": "pub mod p;\npub mod q;\npub use q::{Config, other as renamed};\n",
            "p.rs": "fn f() { let _ = crate::Config::default(); let _ = \"crate::q\"; }\n",
            "q.rs": "pub struct Config;\nfn g() { let s = \"http://x\"; crate::p::f(); }\n",
        }, [["p", "q"]]),
        "only in strings and comments": ({
            "lib.rs": "pub mod p;\npub mod q;\n",
            "p.rs": "fn f() { crate::q::g(); }\n",
            "q.rs": "/* crate::p::f */ fn g() { let _ = r#\"crate::p\"#; let _ = '{'; }\n"
                    "fn h<'a>(x: &'a str) -> &'a str { x }\n",
        }, []),
        "a path in a body": ({
            "lib.rs": "pub mod x;\npub mod y;\npub mod z;\n",
            "x.rs": "pub fn f() { crate::y::g() }\n",
            "y.rs": "pub fn g() { crate::z::h() }\n",
            "z.rs": "pub fn h() { let _ = crate::x::f; }\n",
        }, [["x", "y", "z"]]),
    }
    failed = 0
    for name, (files, expected) in cases.items():
        with tempfile.TemporaryDirectory() as folder:
            src = Path(folder)
            for path, text in files.items():
                (src / path).parent.mkdir(parents=True, exist_ok=True)
                (src / path).write_text(text)
            found = circles(edges_of(src))
        if found != expected:
            failed += 1
            print(f"import-circles self-test: {name}: found {found}, expected {expected}")
    if failed:
        return 1
    print(f"import-circles self-test: {len(cases)} cases as expected")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--self-test"]:
        return self_test()
    roots = [Path(a) for a in argv] or [Path("node/src"), Path("swarm/src")]
    bad = 0
    for src in roots:
        if not (src / "lib.rs").is_file():
            print(f"import-circles: {src}/lib.rs does not exist", file=sys.stderr)
            return 2
        edges = edges_of(src)
        for component in circles(edges):
            bad += 1
            print(f"{src}: an import circle among {', '.join(component)}:")
            for a in component:
                for b in sorted(edges[a]):
                    if b in component:
                        print(f"  {a} -> {b}: {', '.join(edges[a][b][:3])}")
    if bad:
        print(f"import-circles: {bad} circle(s); move what both sides use below both")
        return 1
    print(f"import-circles: none in {', '.join(map(str, roots))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
