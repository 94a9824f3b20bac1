"""Open the report in headless Chromium: check that it renders without errors, take a screenshot.

A browser is found on the PATH (``chromium``, ``chromium-browser``, ``google-chrome``,
``google-chrome-stable``, ``chrome``, ``chrome-headless-shell``; ``INSARCAST_CHROMIUM`` names
another). Debian installs one with ``apt-get install chromium``.

:func:`check_page` loads a copy of the page with a small probe script appended (the report itself
holds no script) and reads back, from the DOM Chromium dumps, the number of images, those that did
not decode, the script errors caught by ``window.onerror`` and the page height; console errors that
Chromium logs are collected too. :func:`screenshot` renders the page at that height.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from insarcast.errors import MissingDependencyError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
              "chrome-headless-shell")
MAX_HEIGHT = 30000

_PROBE = """
<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.getAttribute("data-file") || "?"; });
  var out = {images: imgs.length, broken: broken, errors: window.__errors,
             height: Math.ceil(document.documentElement.scrollHeight),
             sections: Array.prototype.map.call(document.querySelectorAll("section"), function (s) { return s.id; })};
  var pre = document.createElement("pre");
  pre.id = "__probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@dataclass(frozen=True)
class PageCheck:
    images: int
    broken: tuple[str, ...]
    errors: tuple[str, ...]
    height: int
    sections: tuple[str, ...]
    console: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.broken and not self.errors and not self.console


def find_browser() -> str | None:
    """Path of a Chromium-like browser, or None."""
    named = os.environ.get("INSARCAST_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).exists() else None)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser(browser: str | None) -> str:
    path = browser or find_browser()
    if not path:
        raise MissingDependencyError("no headless Chromium found (looked for " + ", ".join(CANDIDATES) +
                                     "; set INSARCAST_CHROMIUM or install one, e.g. apt-get install chromium)")
    return path


def _run(browser: str, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="insarcast-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--mute-audio",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HOME": profile})


def check_page(index_html: str | os.PathLike, *, browser: str | None = None, timeout: float = 120,
               width: int = 1280) -> PageCheck:
    """Load the page in headless Chromium and report images, broken images, script and console errors."""
    exe = _browser(browser)
    index_html = Path(index_html)
    text = index_html.read_text(encoding="utf-8")
    probe = text.replace("</body>", _PROBE + "</body>", 1)
    with tempfile.TemporaryDirectory(prefix="insarcast-probe-") as tmp:
        copy = Path(tmp) / "probe.html"
        copy.write_text(probe, encoding="utf-8")
        done = _run(exe, [f"--window-size={width},1000", "--virtual-time-budget=15000", "--dump-dom",
                          copy.resolve().as_uri()], timeout=timeout)
    match = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
    if not match:
        raise RuntimeError(f"Chromium did not render the page (exit {done.returncode}): {done.stderr[-2000:]}")
    import html as _html

    data = json.loads(_html.unescape(match.group(1)))
    console = tuple(line for line in done.stderr.splitlines()
                    if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line))
    return PageCheck(images=int(data["images"]), broken=tuple(data["broken"]), errors=tuple(data["errors"]),
                     height=int(data["height"]), sections=tuple(data["sections"]), console=console)


def screenshot(index_html: str | os.PathLike, png: str | os.PathLike, *, browser: str | None = None,
               width: int = 1280, height: int | None = None, timeout: float = 180) -> Path:
    """A PNG of the whole page (height measured with :func:`check_page` unless given, capped)."""
    exe = _browser(browser)
    if height is None:
        height = check_page(index_html, browser=exe, timeout=timeout, width=width).height
    height = max(600, min(int(height), MAX_HEIGHT))
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run(exe, [f"--window-size={width},{height}", "--virtual-time-budget=15000",
                      f"--screenshot={png.resolve()}", Path(index_html).resolve().as_uri()], timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
    return png
