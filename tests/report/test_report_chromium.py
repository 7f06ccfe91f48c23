"""Open report.html in headless Chromium: loads, all images decode, main sections present."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if shutil.which(p)), None)

# Added to a *copy* of the report only (the report itself has no script): after load, record how
# many <img> there are and how many failed to decode or are not data: URIs.
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0, nondata = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) bad++;
    if (imgs[i].getAttribute('src').indexOf('data:image/') !== 0) nondata++;
  }
  var d = document.createElement('div');
  d.id = 'imgcheck';
  d.setAttribute('data-total', imgs.length);
  d.setAttribute('data-bad', bad);
  d.setAttribute('data-nondata', nondata);
  document.body.appendChild(d);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_loads_in_headless_chromium(fake_output, tmp_path):
    html = fake_output["report"].read_text()
    assert "<script" not in html.lower()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK + "\n</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    m = re.search(r'<div id="imgcheck" data-total="(\d+)" data-bad="(\d+)" data-nondata="(\d+)"', dom)
    assert m, f"chromium did not run the check (rc={proc.returncode}): {proc.stderr[-800:]}"
    total, bad, nondata = map(int, m.groups())
    assert total == html.count("<img ") and total >= 5
    assert bad == 0 and nondata == 0
    for sec in ("summary", "methods", "participants", "qc", "results", "ground-truth", "files"):
        assert f'<section id="{sec}"' in dom
    # user text arrives as text, not as markup
    assert "<script>alert" not in dom.split("<script>\nwindow")[0]
