"""A Windows peer in the lab (docs/lab.md, "A Windows peer"): the Windows
build, `minimodel.exe`, run under Wine (scripts/wine-run) in a host of its
own beside Linux hosts.

It needs the `.exe` (LAB_WINDOWS_EXE; scripts/cross builds it, see
docs/release.md) and what scripts/wine-run needs (Debian's wine64 and
gcc-mingw-w64-x86-64). Without them the scenario fails and says so.

Paths given to the Windows program are the lab's Unix paths: Wine's drive
Z: is the Unix root, and a path with no drive is on the current drive,
which is Z: for a program started in a Unix directory. The program names
its files the Windows way (`Z:\\tmp\\...` or `\\tmp\\...`) in what it prints,
and `unix_path` turns them back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path, PureWindowsPath

from harness import (
    MODEL, MiB, PORT, SEED_CAP, Failed, check_download, fail_if, indent, json_events, say,
    start_fetch, start_seeder, wait_all,
)
from netlab import LabError

HERE = Path(__file__).resolve().parent
WINE_RUN = HERE.parent / "scripts" / "wine-run"
WINESERVER = Path("/usr/lib/wine/wineserver")


def windows_exe():
    """The Windows build to run: LAB_WINDOWS_EXE, which must exist."""
    given = os.environ.get("LAB_WINDOWS_EXE")
    if not given:
        raise LabError("LAB_WINDOWS_EXE is not set: it names the Windows build to run under Wine "
                       "(scripts/cross x86_64-pc-windows-gnu build -p minimodel --bin minimodel; "
                       "docs/release.md)")
    exe = Path(given).resolve()
    if not exe.is_file():
        raise LabError(f"LAB_WINDOWS_EXE names {exe}, which is not a file")
    if not WINESERVER.exists() or not Path("/usr/lib/wine/wine64").exists():
        raise LabError("Wine is missing: apt-get install wine64 (and gcc-mingw-w64-x86-64 for "
                       "scripts/wine-run's stub)")
    return exe


def unix_path(text):
    """A path the Windows program printed, as a Unix path: `Z:\\a\\b`,
    `\\a\\b` and `/a\\b` are `/a/b` (drive Z: is the Unix root); a Unix path
    is kept."""
    if "\\" not in text and not text[1:2] == ":":
        return Path(text)
    # Either separator: a path given as /tmp/w comes back as /tmp/w\x.slm.
    windows = PureWindowsPath(text)
    if windows.drive and windows.drive.upper() != "Z:":
        raise Failed(f"the Windows peer named {text}, on drive {windows.drive}, not Z:")
    return Path("/", *windows.parts[1:])


class WindowsPeer:
    """`minimodel.exe` under Wine in `host`. One wineserver for the run,
    in the host, started before any program and stopped at the end, so
    that no Wine process outlives the lab's namespaces."""

    def __init__(self, ctx, host, exe):
        self.ctx = ctx
        self.host = host
        self.exe = exe
        # scripts/wine-run's prefix (made on first use, kept in target/),
        # unless WINEPREFIX names another.
        self.env = dict(os.environ)
        self.env.setdefault("WINEPREFIX", str(HERE.parent / "target" / "wine-prefix"))
        self.env.setdefault("WINEDEBUG", "-all")

    def __enter__(self):
        # Wine's server makes and binds its programs' sockets, so it runs
        # in the Windows host's namespace, started before any program
        # (in the foreground, so that the lab stops it with the host's
        # other processes).
        # One left running by an earlier run of the prefix is stopped first.
        subprocess.run([str(WINESERVER), "-k"], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        self.server = self.host.popen([str(WINESERVER), "-f", "-p"], "wineserver", env=self.env)
        version = self.popen(["--version"], "version")
        if version.wait(300) is None or version.returncode != 0 or \
                not version.stdout_text().startswith("minimodel "):
            raise LabError(f"{self.exe} --version under Wine failed ({version.returncode}):\n"
                           f"{indent(version.tail())}")
        say(f"  windows peer: {version.stdout_text().strip()} under Wine")
        return self

    def __exit__(self, *exc):
        subprocess.run([str(WINESERVER), "-k"], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        self.server.wait(10)

    def popen(self, args, name):
        return self.host.popen([str(WINE_RUN), str(self.exe), *args], name, env=self.env)


def fetched_event(proc):
    events = json_events(proc, "fetched")
    if not events:
        raise Failed(f"{proc.name} printed no `fetched` event:\n{indent(proc.tail())}")
    return events[-1]


def check_windows_download(proc, out, sha, problems):
    """check_download for the Windows peer: the files it names in its
    `delivered` and `fetched` events are read back as Unix paths."""
    return check_download(_WithoutPaths(proc), out, sha, problems)


class _WithoutPaths:
    """`proc` with its delivery events' paths rewritten to Unix ones, for
    check_download."""

    def __init__(self, proc):
        self._proc = proc
        self.name = proc.name
        self.returncode = proc.returncode

    def tail(self, lines=12):
        return self._proc.tail(lines)

    def stdout_text(self):
        out = []
        for line in self._proc.stdout_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                out.append(line)
                continue
            if isinstance(event, dict) and isinstance(event.get("path"), str):
                event["path"] = str(unix_path(event["path"]))
            out.append(json.dumps(event))
        return "\n".join(out)


def windows_peer(ctx, name, size=64 * MiB, timeout=300):
    """A Windows peer in a swarm of Linux peers. A Linux host seeds; the
    Windows peer fetches from it with --serve and is killed (SIGKILL) once
    it holds between a fifth and four fifths of the file; started again
    on the same directory it resumes (it keeps what it verified: the
    `fetched` event counts resumed chunks) and finishes; the lab hashes its
    file. Then the Linux seeder stops, the Windows peer seeds the file it
    fetched (writing its own offer), and a Linux host fetches from it
    alone and verifies every chunk: what the Windows peer served is the
    artifact."""
    exe = windows_exe()
    run_dir = ctx.scratch(name)
    _, manifest, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=SEED_CAP)
        win = lab.add_host("w", cap=SEED_CAP)
        linux = lab.add_host("l")
        lab.wait_reachable()
        with WindowsPeer(ctx, win, exe) as peer:
            seed, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT),
                                       extra=["--max-upload", "4MiB"])
            out_w = run_dir / "w"
            args = ["--json", "fetch", str(manifest), "--offer", str(offer), "-o", str(out_w),
                    "--yes", "--serve", "--listen", win.addr(PORT), "--no-port-mapping"]
            first = peer.popen(args, "fetch-1")
            held = wait_for_share(first, size, 0.2, 0.8, 120)
            first.signal(9)
            first.wait(10)
            say(f"  windows peer killed holding {held / MiB:.1f} of {size / MiB:.0f} MiB")
            wait_port_released(win, PORT, 30)
            again = peer.popen(args, "fetch-2")
            late = wait_all([again], timeout)
            problems = [f"{p.name} did not finish in {timeout} s" for p in late]
            check_windows_download(again, out_w, sha, problems)
            fail_if(problems)
            fetched = fetched_event(again)
            resumed = fetched.get("chunks_resumed", 0)
            if resumed <= 0:
                problems.append(f"the Windows peer started again with {held} bytes verified "
                                f"resumed no chunk: {fetched}")
            seed.stop()
            wait_port_released(win, PORT, 30)
            # The Windows peer seeds what it fetched; a Linux host fetches
            # from it alone.
            offer_w = run_dir / "w.offer.json"
            served = peer.popen(["--json", "seed", str(manifest), str(out_w / f"{MODEL}.slm"),
                                 "--listen", win.addr(PORT), "--offer", str(offer_w), "--yes",
                                 "--no-port-mapping"], "seed")
            wait_for_file(offer_w, served, 120)
            out_l = run_dir / "l"
            fetch_l = start_fetch(ctx, linux, size, ["--offer", offer_w], out_l)
            late = wait_all([fetch_l], timeout)
            problems += [f"{p.name} did not finish in {timeout} s" for p in late]
            receipt = check_download(fetch_l, out_l, sha, problems)
            served.stop()
    if receipt is not None:
        peers = receipt.get("source", {}).get("peers", [])
        from_w = sum(p.get("bytes", 0) for p in peers
                     if str(p.get("address", "")).startswith(f"{win.ip4}:"))
        if from_w != size:
            problems.append(f"the Linux fetch's receipt has {from_w} of {size} bytes from the "
                            f"Windows peer at {win.ip4}: {peers}")
    say(f"  windows peer: resumed {resumed} chunks, fetched {fetched.get('chunks_fetched')}; "
        f"served {size / MiB:.0f} MiB to a Linux peer, which verified it")
    ctx.results.append({"scenario": name, "chunks_resumed": resumed,
                        "chunks_fetched": fetched.get("chunks_fetched"), "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def wait_for_share(proc, size, low, high, timeout):
    """Waits until `proc`'s progress says it verified at least `low` of
    `size` bytes; fails when it passes `high` first (too fast to kill
    midway), ends, or takes over `timeout` s. Returns the bytes verified."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = json_events(proc, "progress")
        verified = progress[-1].get("verified_bytes", 0) if progress else 0
        if verified > high * size:
            raise Failed(f"{proc.name} verified {verified} bytes before it could be killed midway")
        if verified >= low * size:
            return verified
        if proc.poll() is not None:
            raise Failed(f"{proc.name} exited {proc.returncode} at {verified} bytes:\n"
                         f"{indent(proc.tail())}")
        time.sleep(0.05)
    raise Failed(f"{proc.name} verified less than {low:.0%} in {timeout} s:\n{indent(proc.tail())}")


def wait_port_released(host, port, timeout):
    """Waits until no socket in `host` holds UDP `port`. Wine's server
    holds a copy of each socket its programs open and closes a killed
    program's copies only once it notices the death, a moment after the
    program is gone (Windows closes them before the process ends); a
    program started again before then finds its port in use."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        held = host.run(["ss", "-H", "-u", "-a", "-n", f"sport = :{port}"]).stdout.strip()
        if not held:
            if time.monotonic() - start >= 0.1:
                say(f"  UDP port {port} let go after a wait of "
                    f"{time.monotonic() - start:.1f} s")
            return
        if time.monotonic() > deadline:
            raise Failed(f"UDP port {port} in {host.name} still held {timeout} s after its "
                         f"program ended:\n{indent(held)}")
        time.sleep(0.05)


def wait_for_file(path, proc, timeout):
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if proc.poll() is not None:
            raise Failed(f"{proc.name} exited {proc.returncode} before writing {path}:\n"
                         f"{indent(proc.tail())}")
        if time.monotonic() > deadline:
            raise Failed(f"{proc.name} wrote no {path} in {timeout} s:\n{indent(proc.tail())}")
        time.sleep(0.05)
    time.sleep(0.2)


SCENARIOS = {
    "windows-peer": windows_peer,
}
