"""Open a report in headless Chromium over the DevTools protocol, as a person would see it.

``inspect(html_path)`` starts a fresh Chromium (empty profile, background networking off), loads
the file, and returns what a reader would notice: console errors and uncaught exceptions, every
network request the page made, each chart's drawn size and mark count, a full-page screenshot
(PNG bytes) and, when asked, the printed PDF. The tests and the screenshot script use it; nothing
in a report needs it.

Chromium is found as ``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH (Debian's
package is ``chromium``). ``offline=True`` runs it in a new network namespace with no interfaces
(``unshare -n``, root only), so any fetch would fail outright.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadbench.contract.errors import LoadbenchError

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What the browser saw. ``requests`` excludes the report file itself."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    screenshot_png: bytes = b""
    pdf: bytes = b""
    page_size: tuple[int, int] = (0, 0)
    load_ms: float = 0.0


class _DevTools:
    """The DevTools protocol over Chromium's pipe (fds 3 and 4, NUL-terminated JSON messages).

    A pipe rather than a TCP port, so it also works when Chromium runs in a network namespace of
    its own, and no port is opened at all.
    """

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out = os.fdopen(to_browser, "wb", buffering=0)
        self._in = os.fdopen(from_browser, "rb", buffering=0)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="devtools-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    data = json.loads(raw)
                    if "id" in data:
                        self._replies[data["id"]] = data
                    elif "method" in data:
                        self.events.append(data)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method: str, timeout_s: float = 30.0, session_id: str | None = None,
             **params: Any) -> dict[str, Any]:
        self._next += 1
        msg_id = self._next
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session_id:
            msg["sessionId"] = session_id
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise LoadbenchError(f"Chromium: no answer to {method} within {timeout_s} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise LoadbenchError(f"DevTools {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for ev in self.events:
                    if ev["method"] == method:
                        return ev
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise LoadbenchError(f"Chromium: no {method} within {timeout_s} s")
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._out.close()


_CHART_JS = """
Array.from(document.querySelectorAll('svg[data-chart]')).map(s => {
  const r = s.getBoundingClientRect();
  return {slug: s.dataset.chart, x: r.left + window.scrollX, y: r.top + window.scrollY,
          width: r.width, height: r.height,
          marks: s.querySelectorAll('path,rect,circle,line').length,
          empty: s.dataset.empty === '1'};
})
"""


def _inspect(chromium: str, url: str, *, width: int, offline: bool, pdf: bool, settle_s: float,
             media: str) -> PageCheck:
    profile = tempfile.mkdtemp(prefix="loadbench-chromium-")
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
           f"--window-size={width},900", "about:blank"]
    if offline:
        cmd = ["unshare", "-n", *cmd]
    cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
    res_r, res_w = os.pipe()  # Chromium writes replies and events on fd 4

    def wire_fds() -> None:  # in the child, before exec
        # Through fresh copies: a pipe end may already be fd 3 or 4, and dup2 onto itself would
        # leave it close-on-exec.
        a, b = os.dup(cmd_r), os.dup(res_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=wire_fds, close_fds=False)
    os.close(cmd_r)
    os.close(res_w)
    dt = _DevTools(cmd_w, res_r)
    try:
        targets = dt.call("Target.getTargets").get("targetInfos", [])
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            raise LoadbenchError("Chromium: no page target to drive")
        session = dt.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        return _drive(_Session(dt, session), url, width=width, pdf=pdf, settle_s=settle_s, media=media)
    finally:
        dt.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            dt._in.close()
        shutil.rmtree(profile, ignore_errors=True)


class _Session:
    """Commands and events of one attached page (flattened session)."""

    def __init__(self, dt: _DevTools, session_id: str) -> None:
        self._dt = dt
        self._id = session_id

    def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        return self._dt.call(method, timeout_s, self._id, **params)

    def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        return self._dt.wait_event(method, timeout_s)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for e in self._dt.events if e.get("sessionId") == self._id]


def _drive(dt: _Session, url: str, *, width: int, pdf: bool, settle_s: float, media: str) -> PageCheck:
    for domain in ("Page", "Network", "Runtime", "Log"):
        dt.call(f"{domain}.enable")
    if media:
        dt.call("Emulation.setEmulatedMedia", media=media)
    dt.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    started = time.perf_counter()
    dt.call("Page.navigate", url=url)
    dt.wait_event("Page.loadEventFired")
    load_ms = (time.perf_counter() - started) * 1e3
    time.sleep(settle_s)  # anything late (a lazy fetch, a timer) shows up in the events
    check = PageCheck(url=url, load_ms=load_ms)
    for ev in dt.events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Network.requestWillBeSent":
            req_url = p.get("request", {}).get("url", "")
            if req_url != url:
                check.requests.append(req_url)
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            check.console_errors.append(str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            check.console_errors.append(str(p["entry"].get("text")))
    res = dt.call("Runtime.evaluate", expression=_CHART_JS, returnByValue=True)
    check.charts = res.get("result", {}).get("value") or []
    metrics = dt.call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
    check.page_size = (int(size.get("width", width)), int(size.get("height", 900)))
    shot = dt.call("Page.captureScreenshot", timeout_s=120, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": check.page_size[0], "height": check.page_size[1],
                               "scale": 1})
    check.screenshot_png = base64.b64decode(shot["data"])
    if pdf:
        printed = dt.call("Page.printToPDF", timeout_s=120, printBackground=True, preferCSSPageSize=True)
        check.pdf = base64.b64decode(printed["data"])
    return check


def inspect(html_path: str | Path, *, width: int = 1280, offline: bool = False, pdf: bool = False,
            settle_s: float = 0.5, chromium: str | None = None, media: str = "") -> PageCheck:
    """Load ``html_path`` in a fresh headless Chromium and report what it saw (see the module docstring).

    ``media="print"`` lays the page out with its print styles (what a printout shows).
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise LoadbenchError("Chromium not found on PATH (Debian: apt-get install chromium)")
    if offline and os.geteuid() != 0:
        raise LoadbenchError("offline=True needs root, for a network namespace (unshare -n)")
    url = Path(html_path).resolve().as_uri()
    return _inspect(exe, url, width=width, offline=offline, pdf=pdf, settle_s=settle_s, media=media)
