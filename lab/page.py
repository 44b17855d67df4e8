#!/usr/bin/env python3
"""The companion's page in headless Chromium, for the lab: run inside a
lab host's namespace (`host.popen(["python3", "lab/page.py", ...])`), where
the companion's API listens on that host's loopback.

    lab/page.py --api URL --token-file PATH --profile DIR [--fetch TICKET
                [--serve]] [--timeout S]

It starts `chromedriver` (Debian's `chromium-driver`) on a free loopback
port, opens the page, pastes the token and connects. With `--fetch` it
pastes TICKET into the download form (the field that takes a manifest or
a ticket), with `--serve` ticks "serve verified chunks while fetching",
sends it, says yes in the consent dialog and waits until the
download is in the page's finished list. Without it, it waits until one
of the page's cards shows who can reach the item ("Reachability: ...").
Either way it reports every reachability line the page showed.

Prints JSON lines: `{"event": "asks", "words": ...}` (the consent dialog's
words), `{"event": "consented", "t": UNIX_S}`, `{"event": "reach",
"verdict": ..., "text": ...}` (each one seen, once), `{"event": "done",
"t": UNIX_S}`. Exits 0 when it got what it waited for, 1 otherwise (with
what it saw on stderr). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def say(**event):
    print(json.dumps(event), flush=True)


class Driver:
    """One chromedriver and one browser session, ended by `close`."""

    def __init__(self, profile: str):
        driver = shutil.which("chromedriver")
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if not driver or not browser:
            raise SystemExit("lab/page.py needs chromium and chromedriver "
                             "(apt-get install chromium chromium-driver)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.child = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["value"].get("ready"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.child.kill()
                raise SystemExit("chromedriver did not get ready in 30 s")
            time.sleep(0.1)
        created = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                # Root in a namespace: no user namespaces for the sandbox.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         f"--user-data-dir={profile}"],
            }}}})
        self.session = created["value"]["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None

    def call(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)["value"]

    def element(self, css):
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type_into(self, css, text):
        self.call("POST", f"/element/{self.element(css)}/value", {"text": text})

    def click(self, css):
        self.call("POST", f"/element/{self.element(css)}/click", {})

    def eval(self, script):
        return self.call("POST", "/execute/sync", {"script": script, "args": []})

    def wait_until(self, what, seconds, script, every=None):
        deadline = time.monotonic() + seconds
        while True:
            if every:
                every()
            value = self.eval(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise SystemExit(f"the page did not show {what} in {seconds} s")
            time.sleep(0.2)

    def close(self):
        try:
            self._call("DELETE", f"/session/{self.session}")
        except (OSError, SystemExit):
            pass
        self.child.kill()
        self.child.wait()


# Every reachability line on the page's cards: [verdict, text].
REACH = """return [...document.querySelectorAll('li.item p.reach')]
    .map((p) => [p.dataset.verdict || '', p.textContent]);"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--fetch")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    token = open(args.token_file, encoding="utf-8").read().strip()
    driver = Driver(args.profile)
    seen = set()

    def note_reach():
        for verdict, text in driver.eval(REACH) or []:
            if (verdict, text) not in seen:
                seen.add((verdict, text))
                say(event="reach", verdict=verdict, text=text)

    try:
        driver.call("POST", "/url", {"url": args.api.rstrip("/") + "/"})
        driver.wait_until("the connect form", 30,
                          "return !document.getElementById('connect-section').hidden;")
        driver.type_into("#token", token)
        driver.click("#connect")
        driver.wait_until("the library", 30,
                          "return !document.getElementById('app').hidden && "
                          "document.getElementById('who').textContent;")
        if args.fetch:
            driver.type_into("#fetch-manifest", args.fetch)
            if args.serve:
                driver.click("#fetch-serve")
            driver.click("#fetch-button")
            words = driver.wait_until(
                "the consent dialog", 60,
                "const d = document.getElementById('consent-dialog'); "
                "return d.open && document.getElementById('consent-asks').innerText;")
            say(event="asks", words=words)
            driver.click("#consent-yes")
            say(event="consented", t=time.time())
            driver.wait_until("the download finished", args.timeout,
                              "return document.querySelectorAll('#done-list li.item').length > 0;",
                              every=note_reach)
            say(event="done", t=time.time())
            note_reach()
        else:
            driver.wait_until("who can reach an item", args.timeout,
                              "return document.querySelector('li.item p.reach') !== null;",
                              every=note_reach)
            note_reach()
    except SystemExit as failure:
        print(f"page: {failure}", file=sys.stderr)
        sys.exit(1)
    finally:
        driver.close()


if __name__ == "__main__":
    main()
