"""Headless Debian Chromium driven over the Chrome DevTools Protocol (no browser download, no webdriver).

Started with its own profile directory and `--remote-debugging-port=0`; the port it picked is read from
the profile's DevToolsActivePort file. Stopped by its PID.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websocket

# Offline (no background networking, updates or sync), deterministic rendering (every compositor stage before a
# capture), no sandbox (CI runs as root, where Chromium's sandbox refuses to start), /tmp instead of a small /dev/shm.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--run-all-compositor-stages-before-draw", "--disable-dev-shm-usage", "--window-size=1400,1000"]
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 60.0
# A healthy capture takes well under a second. Headless Chromium can leave a capture pending while its
# compositor is idle (browser-use/browser-harness#812); a brief screencast produces a frame and wakes it.
CAPTURE_TIMEOUT_S = 10.0
COMPOSITOR_KICK_S = 0.25


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CDPError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str, workdir: Path):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=workdir))
        self.log = workdir / "chromium.log"
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"chromium did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])

    def new_page(self) -> "Page":
        response = httpx.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=CALL_TIMEOUT_S)
        response.raise_for_status()
        return Page(response.json()["webSocketDebuggerUrl"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)
        shutil.rmtree(self.profile, ignore_errors=True)


class PageLog:
    """What a person would see in DevTools after a failure: the console (console calls, uncaught exceptions,
    browser log entries) and every fetch/XHR the page made, with its status, timing and, for a write or an
    error, the server's answer."""

    def __init__(self):
        self.console: list[dict] = []
        self.requests: dict[str, dict] = {}
        self.answers_due: list[str] = []

    def take(self, event: dict) -> None:
        method, params = event["method"], event.get("params", {})
        now = time.time()
        if method == "Runtime.consoleAPICalled":
            self.console.append({"t": now, "kind": f"console.{params.get('type')}",
                                 "text": " ".join(_remote_text(a) for a in params.get("args", []))})
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append({"t": now, "kind": "exception", "text": details.get("text"),
                                 "exception": (details.get("exception") or {}).get("description")})
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append({"t": now, "kind": f"log.{entry.get('level')}", "text": entry.get("text"),
                                 "url": entry.get("url")})
        elif method == "Network.requestWillBeSent" and params.get("type") in ("XHR", "Fetch"):
            request = params["request"]
            self.requests[params["requestId"]] = {"t": now, "sent": params["timestamp"], "method": request["method"],
                                                  "url": request["url"], "body": request.get("postData")}
        elif params.get("requestId") in self.requests:
            record = self.requests[params["requestId"]]
            if method == "Network.responseReceived":
                record.update(status=params["response"]["status"],
                              answered_after_s=round(params["timestamp"] - record["sent"], 4))
            elif method == "Network.loadingFinished" and (record["method"] != "GET" or record.get("status", 0) >= 400):
                self.answers_due.append(params["requestId"])
            elif method == "Network.loadingFailed":
                record.update(failed=params.get("errorText"), canceled=params.get("canceled"),
                              failed_after_s=round(params["timestamp"] - record["sent"], 4))

    def write(self, directory: Path) -> None:
        """console.jsonl and network.jsonl, one JSON object a line, in the order things happened."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "console.jsonl").write_text("".join(json.dumps(c) + "\n" for c in self.console))
        (directory / "network.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.requests.values()))


def _remote_text(arg: dict) -> str:
    return str(arg["value"]) if "value" in arg else arg.get("description") or arg.get("type", "")


class Page:
    """One tab: navigate, evaluate JavaScript, type, screenshot."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=CALL_TIMEOUT_S, suppress_origin=True)
        self.ids = itertools.count(1)
        self.captures_stall = False
        self.log = PageLog()
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Network.enable")

    def call(self, method: str, **params: Any) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.log.take(message)
            elif message.get("id") == msg_id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                self._fetch_answers()
                return message.get("result", {})

    def _fetch_answers(self) -> None:
        """Reads the answers the log wants while Chromium still holds them (a navigation discards them)."""
        while self.log.answers_due:
            request_id = self.log.answers_due.pop()
            try:
                body = self.call("Network.getResponseBody", requestId=request_id).get("body")
            except CDPError as e:
                body = f"(not available: {e})"
            self.log.requests[request_id]["answer"] = body

    def _call_within(self, timeout_s: float, method: str, **params: Any) -> dict:
        self.ws.settimeout(timeout_s)
        try:
            return self.call(method, **params)
        finally:
            self.ws.settimeout(CALL_TIMEOUT_S)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}...: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except CDPError:
                value = None
            if value:
                return value
            time.sleep(0.25)
        raise CDPError(f"timed out after {timeout_s} s waiting for {what}")

    def type_text(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        """Full page, else the viewport after waking the compositor; else a note (the capture is a record for
        people, not what the test judges: a capture stalled inside Chromium must not stop the test)."""
        # once a page's captures stall they keep stalling: one short try each, so the test's budget holds
        attempts = [{"captureBeyondViewport": False}] if self.captures_stall else \
            [{"captureBeyondViewport": True}, {"captureBeyondViewport": False}]
        path.parent.mkdir(parents=True, exist_ok=True)
        for i, options in enumerate(attempts):
            try:
                data = self._call_within(CAPTURE_TIMEOUT_S, "Page.captureScreenshot", format="png", **options)["data"]
            except websocket.WebSocketTimeoutException:
                if i == 0:
                    self.call("Page.startScreencast", format="jpeg", quality=10)
                    time.sleep(COMPOSITOR_KICK_S)
                    self.call("Page.stopScreencast")
                continue
            path.write_bytes(base64.b64decode(data))
            return path
        self.captures_stall = True
        note = path.with_suffix(".capture-stalled.txt")
        note.write_text(f"Chromium did not deliver a screenshot within {CAPTURE_TIMEOUT_S:g} s, twice\n")
        return note

    def close(self) -> None:
        self.ws.close()

