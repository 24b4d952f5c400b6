"""report.html renders in a real browser: headless Chromium (Debian's ``chromium`` package).

The page is opened from a copy with a small probe script appended that, once the
page has loaded, writes into the title how many images decoded. Chromium prints
every console message to stderr (``--enable-logging=stderr``); the report has no
scripts of its own and the probe logs nothing, so any console line is an error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from poisonlab.result_files import REPORT_FILE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)

_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const drawn = images.filter((i) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  document.title = "probe images=" + images.length + " drawn=" + drawn.length +
    " breakdown=" + (document.getElementById("breakdown") ? 1 : 0);
});
</script>"""


def _chromium(user_data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_data}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_report_renders_in_headless_chromium(small_run, tmp_path):
    page = tmp_path / "report.html"
    text = (small_run / REPORT_FILE).read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")

    dom = _chromium(tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    probe = re.search(r"probe images=(\d+) drawn=(\d+) breakdown=(\d)", dom.stdout)
    assert probe, dom.stdout[:500]
    images, drawn, breakdown = map(int, probe.groups())
    assert images >= 4 and drawn == images and breakdown == 1
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []

    screenshot = tmp_path / "report.png"
    shot = _chromium(
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        "--window-size=1200,3000",
        (small_run / REPORT_FILE).as_uri(),
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a blank page is a few kB
