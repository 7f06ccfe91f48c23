"""Open report.html in headless Chromium as a reader would: it loads, every image decodes (embedded
thumbnails and the linked QC figures), every menu and in-page link lands on an element, every
file link exists, the first screen shows the findings, and the file stays small."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if shutil.which(p)), None)
MAX_REPORT_BYTES = 5 * 1024 * 1024

# Added to a *copy* of the report only (the report itself has no script): after load, count the
# images that did not decode, the in-page links whose target id is missing, and the menu links.
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = [], missing = [];
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) bad.push(imgs[i].getAttribute('alt'));
  }
  var links = document.querySelectorAll('a[href^="#"]');
  for (var j = 0; j < links.length; j++) {
    var id = decodeURIComponent(links[j].getAttribute('href').slice(1));
    if (!document.getElementById(id)) missing.push(id);
  }
  var d = document.createElement('div');
  d.id = 'imgcheck';
  d.setAttribute('data-total', imgs.length);
  d.setAttribute('data-bad', bad.length);
  d.setAttribute('data-links', links.length);
  d.setAttribute('data-menu', document.querySelectorAll('nav.side a').length);
  d.setAttribute('data-missing', missing.join('|'));
  document.body.appendChild(d);
});
</script>"""


def _chromium(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_loads_in_headless_chromium(fake_output, tmp_path):
    report = fake_output["report"]
    html = report.read_text()
    assert "<script" not in html.lower()
    assert report.stat().st_size < MAX_REPORT_BYTES
    # the probe sits next to report.html so that the linked QC figures resolve as for the reader;
    # every <details> opened and lazy loading off, so that every image is fetched
    probe = report.with_name("probe_report.html")
    probe.write_text(html.replace('loading="lazy" ', "").replace("<details", "<details open")
                     .replace("</body>", CHECK + "\n</body>"))
    try:
        proc = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    dom = proc.stdout
    m = re.search(r'<div id="imgcheck" data-total="(\d+)" data-bad="(\d+)" data-links="(\d+)" data-menu="(\d+)" '
                  r'data-missing="([^"]*)"', dom)
    assert m, f"chromium did not run the check (rc={proc.returncode}): {proc.stderr[-800:]}"
    total, bad, links, menu = map(int, m.groups()[:4])
    assert total == html.count("<img ") and total >= 5
    assert bad == 0
    assert m.group(5) == "", f"links to missing ids: {m.group(5)}"
    # the menu: the fixed sections, every analysis with results and every significant contrast
    assert menu >= 8 and links >= menu
    nav = dom.split('<nav class="side"')[1].split("</nav>")[0]
    for target in ("#findings", "#methods", "#qc", "#r-vbm", "#r-vbm-gm-patient-lt-control",
                   "#r-vbm-gm-patient-gt-control", "#r-roi-volumes", "#ground-truth", "#files"):
        assert f'href="{target}"' in nav, target
    for sec in ("findings", "summary", "methods", "participants", "qc", "results", "ground-truth", "files"):
        assert f'id="{sec}"' in dom
    # every file link and image src that is not in-page / embedded points at an existing file
    out = report.parent
    for ref in re.findall(r'(?:href|src)="([^"#][^"]*)"', html):
        if ref.startswith("data:"):
            continue
        assert not re.match(r"^[a-z]+:", ref), f"external reference {ref}"
        assert (out / unquote(ref)).is_file(), ref
    # user text arrives as text, not as markup
    assert "<script>alert" not in dom.split("<script>\nwindow")[0]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_first_screen_screenshot(fake_output, tmp_path):
    """A 1400 x 900 screenshot of the report: not blank, and the findings table is the first thing
    under the header (its row for the planted thalamus effect is in the first screen's HTML order)."""
    from PIL import Image

    shot = tmp_path / "first.png"
    proc = _chromium(tmp_path, "--window-size=1400,900", "--hide-scrollbars", f"--screenshot={shot}",
                     fake_output["report"].as_uri())
    assert shot.is_file(), proc.stderr[-800:]
    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im.shape == (900, 1400)
    assert im.std() > 10                       # text, menu and table drawn, not a blank page
    assert (im[:, :200] < 250).mean() > 0.5    # the side menu (light blue-grey) fills the left column
    html = fake_output["report"].read_text()
    main = html.split("<main>")[1]
    assert main.lstrip().startswith('<section id="findings">')
    first = main.split("</section>")[0]
    assert "Thalamus_L" in first and "patient-lt-control" in first
