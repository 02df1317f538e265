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

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from loadbench.errors import LoadbenchError

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
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._event_seen = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)
                self._event_seen.set()

    async def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        await self._ws.send_json({"id": self._next, "method": method, "params": params})
        reply = await asyncio.wait_for(fut, timeout_s)
        if "error" in reply:
            raise LoadbenchError(f"DevTools {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    async def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if ev["method"] == method:
                    return ev
            seen = len(self.events)
            self._event_seen.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadbenchError(f"Chromium: no {method} within {timeout_s} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_seen.wait(), left)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


_CHART_JS = """
Array.from(document.querySelectorAll('svg[data-chart]')).map(s => {
  const r = s.getBoundingClientRect();
  return {slug: s.dataset.chart, width: r.width, height: r.height,
          marks: s.querySelectorAll('path,rect,circle,line').length,
          empty: s.textContent.includes('no data')};
})
"""


async def _inspect(chromium: str, url: str, *, width: int, offline: bool, pdf: bool, settle_s: float) -> PageCheck:
    profile = tempfile.mkdtemp(prefix="loadbench-chromium-")
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
           f"--window-size={width},900", "about:blank"]
    if offline:
        cmd = ["unshare", "-n", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-400:] if proc.stderr else ""
                raise LoadbenchError(f"Chromium exited with {proc.returncode} before DevTools came up: {err}")
            if time.monotonic() > deadline:
                raise LoadbenchError("Chromium: DevTools did not come up within 30 s")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t.get("type") == "page")
            ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            dt = _DevTools(ws)
            try:
                return await _drive(dt, url, width=width, pdf=pdf, settle_s=settle_s)
            finally:
                await dt.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(dt: _DevTools, url: str, *, width: int, pdf: bool, settle_s: float) -> PageCheck:
    for domain in ("Page", "Network", "Runtime", "Log"):
        await dt.call(f"{domain}.enable")
    await dt.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    started = time.perf_counter()
    await dt.call("Page.navigate", url=url)
    await dt.wait_event("Page.loadEventFired")
    load_ms = (time.perf_counter() - started) * 1e3
    await asyncio.sleep(settle_s)  # anything late (a lazy fetch, a timer) shows up in the events
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
    res = await dt.call("Runtime.evaluate", expression=_CHART_JS, returnByValue=True)
    check.charts = res.get("result", {}).get("value") or []
    metrics = await dt.call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
    check.page_size = (int(size.get("width", width)), int(size.get("height", 900)))
    shot = await dt.call("Page.captureScreenshot", timeout_s=120, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": check.page_size[0], "height": check.page_size[1],
                               "scale": 1})
    check.screenshot_png = base64.b64decode(shot["data"])
    if pdf:
        printed = await dt.call("Page.printToPDF", timeout_s=120, printBackground=True, preferCSSPageSize=True)
        check.pdf = base64.b64decode(printed["data"])
    return check


def inspect(html_path: str | Path, *, width: int = 1280, offline: bool = False, pdf: bool = False,
            settle_s: float = 0.5, chromium: str | None = None) -> PageCheck:
    """Load ``html_path`` in a fresh headless Chromium and report what it saw (see the module docstring)."""
    exe = chromium or find_chromium()
    if exe is None:
        raise LoadbenchError("Chromium not found on PATH (Debian: apt-get install chromium)")
    if offline and os.geteuid() != 0:
        raise LoadbenchError("offline=True needs root, for a network namespace (unshare -n)")
    url = Path(html_path).resolve().as_uri()
    return asyncio.run(_inspect(exe, url, width=width, offline=offline, pdf=pdf, settle_s=settle_s))
