"""The HTML report in a real browser: headless Chromium opens the page offline, and the DevTools
protocol (over --remote-debugging-pipe: no port, no websocket library) records every request the
page makes, every console message and uncaught exception, counts the SVG charts in the rendered
DOM and takes a full-page screenshot."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelport import api
from modelport.validators import report_formats
from modelport.validators.report import report_json
from tests.unit.test_report_formats import MALICIOUS, sample_reports

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
BASH = shutil.which("bash") or "/bin/bash"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")


@dataclass
class PageVisit:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    svg_count: int = 0
    title: str = ""
    body_text: str = ""
    screenshot: bytes = b""


class _Pipe:
    """CDP over the two pipes Chromium opens with --remote-debugging-pipe: JSON messages, NUL-ended."""

    def __init__(self, write_fd: int, read_fd: int, process: subprocess.Popen) -> None:
        self.write_fd, self.read_fd, self.process = write_fd, read_fd, process
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise TimeoutError("Chromium did not answer over the DevTools pipe")
            ready, _, _ = select.select([self.read_fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)  # events that arrive meanwhile are kept for later

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read_message(deadline))


def visit(page: Path, screenshot: Path | None = None, width: int = 1200) -> PageVisit:
    """Open PAGE in headless Chromium and report what it did. Only this module's own process is
    started and stopped."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="modelport-chromium-")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # The browser expects commands on fd 3 and writes replies to fd 4. bash moves the pipes there
    # (dash cannot name fds above 9; preexec_fn is unsafe once torch has started threads).
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--mute-audio", f"--user-data-dir={profile}", f"--window-size={width},2000", "about:blank"]
    wrapper = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
    # Its stderr (chatty: D-Bus, GPU) goes to a file, so a full pipe can never stall it.
    log = open(Path(profile) / "chromium.log", "wb")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen([BASH, "-c", wrapper, CHROMIUM, *args], pass_fds=(to_browser_r, from_browser_w),
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r, process)
    result = PageVisit()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=60)["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 2000, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.events.clear()  # only what the report page does counts
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired", timeout=60)

        def evaluate(expression: str):
            return pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                             session=session)["result"].get("value")

        result.svg_count = evaluate("document.querySelectorAll('figure svg').length")
        result.title = evaluate("document.title")
        result.body_text = evaluate("document.body.innerText")
        if screenshot is not None:
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": {"x": 0, "y": 0, "width": size["width"],
                                                                 "height": size["height"], "scale": 1}},
                             session=session, timeout=60)
            result.screenshot = base64.b64decode(shot["data"])
            screenshot.write_bytes(result.screenshot)
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                result.exceptions.append(f"{details.get('text')} {details.get('exception', {}).get('description')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                result.console_errors.append(json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                # CSP violations and failed loads land here, not in the console API.
                result.console_errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        try:
            pipe.send("Browser.close", timeout=10)
        except (EOFError, TimeoutError, RuntimeError):
            pass
    finally:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        os.close(to_browser_w)
        os.close(from_browser_r)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    return result


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A report from a real conversion of the bundled example, as `modelport convert` writes it."""
    out = tmp_path_factory.mktemp("html-report")
    result = api.convert(str(ROOT / "examples" / "tiny_classifier.pt2"),
                         api.ConvertOptions(targets=("onnx",), output_dir=out / "out"))
    assert result.exit_code == 0, [t.error for t in result.targets]
    return report_json(result, 1)


def test_report_page_renders_offline_without_errors(real_report, tmp_path):
    pytest.importorskip("matplotlib", reason="the HTML report needs the `report` extra")
    reports = [real_report, *sample_reports()]
    page = tmp_path / "report.html"
    page.write_text(report_formats.html(reports), encoding="utf-8")
    shot = tmp_path / "report.png"

    seen = visit(page, shot)

    assert seen.requests == [page.resolve().as_uri()], f"the page fetched more than itself: {seen.requests}"
    assert seen.exceptions == [] and seen.console_errors == [], (seen.exceptions, seen.console_errors)
    # Every chart drew: the real onnx target (histogram + latency) and the samples' 6 + 3.
    assert seen.svg_count == 2 + 9
    assert seen.title == "modelport report: failed"
    assert MALICIOUS in seen.body_text  # shown as text, not parsed as an <img>
    assert "tiny_classifier.pt2" in seen.body_text and "worst output probs" in seen.body_text
    width, height = _png_size(seen.screenshot)
    assert width >= 1100 and height > 2000  # the full page (less a scrollbar), taller than one screen
    from PIL import Image  # matplotlib's own dependency

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=4096)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"


def test_the_browser_checks_catch_a_bad_page(tmp_path):
    """The harness itself: a page that fetches, throws and logs an error is seen doing all three."""
    page = tmp_path / "bad.html"
    missing = (tmp_path / "missing.png").resolve().as_uri()
    page.write_text(f'<!DOCTYPE html><html><body><img src="{missing}">'
                    '<script>console.error("boom"); undefinedFunction();</script></body></html>')

    seen = visit(page)

    assert missing in seen.requests
    assert any("undefinedFunction" in e for e in seen.exceptions)
    assert any("boom" in e for e in seen.console_errors)
