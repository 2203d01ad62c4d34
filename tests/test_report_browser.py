"""The figures render in a real browser: every <img> of the HTML page loads (naturalWidth > 0).

Builds the figures from the tables of a made-up run (fake_predictions.fake_run), embeds them in one standalone HTML page
(:func:`_gallery`, PNGs as data URIs) and opens it in headless Debian ``chromium``
(``apt-get install -y chromium``). A small script injected into the page writes the result of the
image check into ``document.title``, read back with ``--dump-dom``; a screenshot is taken too
(set ``SCLINBENCH_SCREENSHOT_DIR`` to keep it). If ``results/report.html`` exists from a real
run, it is checked the same way. Skipped, with the reason, when no chromium is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_predictions import fake_run

from sclinbench import plotting, report

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "config" / "reference_results.tsv"

CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  document.title = (bad.length ? 'IMAGES_BROKEN ' + bad.map(function (im) {
      return im.alt || 'unnamed'; }).join(',') : 'IMAGES_OK') + ' count=' + imgs.length;
});
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install it with `apt-get install -y chromium` "
                             "to check that the figures load in a browser")


def _run_chromium(url: str, profile: Path, *extra: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           *extra, url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, f"chromium failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


def _with_check(html_path: Path, out: Path) -> Path:
    text = html_path.read_text(errors="replace")
    if "</body>" in text:  # the last one: embedded documents may contain their own
        head, _, tail = text.rpartition("</body>")
        text = head + CHECK_SCRIPT + "</body>" + tail
    else:
        text += CHECK_SCRIPT
    out.write_text(text)
    return out


def _title(dom: str) -> str:
    match = re.search(r"<title>(.*?)</title>", dom, flags=re.S)
    assert match, "no <title> in the dumped DOM"
    return match.group(1).strip()


def _gallery(figures: dict, path: Path) -> Path:
    """One self-contained HTML page with every PNG (a file, or its bytes) embedded as a data URI."""
    import base64
    import html

    imgs = "".join(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
                   f"{base64.b64encode(png if isinstance(png, bytes) else Path(png).read_bytes()).decode('ascii')}'>"
                   "</figure>" for name, png in figures.items())
    path.write_text("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>sclinbench test figures"
                    f"</title></head><body>{imgs}</body></html>\n")
    return path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    run = fake_run(out, n_boot=100)
    figures = plotting.make_figures(run["summary"], out / "figures", metrics=run["scores"],
                                    reference=report.read_reference(REFERENCE),
                                    dataset_aliases={"atlas": "spermatogenesis"})
    page = _gallery({k: png for k, (png, _) in figures.items()}, out / "gallery.html")
    return page, len(figures)


def test_every_figure_loads_in_chromium(gallery, tmp_path):
    page, n = gallery
    checked = _with_check(page, tmp_path / "checked.html")
    dom = _run_chromium(checked.as_uri(), tmp_path / "profile", "--dump-dom")
    assert _title(dom) == f"IMAGES_OK count={n}"

    shot = tmp_path / "screenshot.png"
    _run_chromium(checked.as_uri(), tmp_path / "profile2", f"--screenshot={shot}",
                  "--window-size=1200,1800", "--hide-scrollbars")
    assert shot.exists() and shot.stat().st_size > 10_000  # a rendered page, not a blank one
    keep = os.environ.get("SCLINBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "gallery_screenshot.png")


def test_the_check_detects_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body>"
                    "<img alt='fine' src='data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7'>"
                    "<img alt='broken' src='data:image/png;base64,AAAA'></body></html>")
    checked = _with_check(page, tmp_path / "checked.html")
    dom = _run_chromium(checked.as_uri(), tmp_path / "profile", "--dump-dom")
    assert _title(dom) == "IMAGES_BROKEN broken count=2"


# The Snakemake report is a single-page app that shows one result at a time, so a broken figure can
# hide behind a menu: every PNG embedded in it is taken out and decoded in a page of plain <img>.
# (Decoding them inside the app, with a script over its whole HTML, outlasted chromium's page budget
# on a loaded CI machine.)
REPORT_PNG = re.compile(r"data:image/png;charset=utf8;filename=([^;]+);base64,([A-Za-z0-9+/=]+)")


def _report_pngs(html_path: Path) -> list[tuple[str, bytes]]:
    """(file name, PNG bytes) of every figure embedded in a Snakemake report, in page order."""
    import base64

    return [(name, base64.b64decode(data)) for name, data in REPORT_PNG.findall(html_path.read_text(errors="replace"))]


def test_snakemake_report_loads(default_run, tmp_path):
    """`snakemake --report` of the real default run: the app renders and every figure decodes."""
    import subprocess as sp
    import sys

    workdir, _ = default_run
    html = workdir / "results" / "report.html"
    res = sp.run([sys.executable, "-m", "snakemake", "--cores", "1", "--report", str(html)], cwd=workdir,
                 capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and html.exists(), res.stderr[-2000:]
    found = _report_pngs(html)
    pngs = dict(found)
    checked = _with_check(_gallery(pngs, tmp_path / "report_figures.html"), tmp_path / "checked.html")
    title = _title(_run_chromium(checked.as_uri(), tmp_path / "profile", "--dump-dom"))
    # the workflow's figures and the default run's three analyses figures, each embedded once, every one decoded
    assert len(found) == len(pngs) == len(plotting.FIGURES) + 3, sorted(name for name, _ in found)
    assert title == f"IMAGES_OK count={len(pngs)}", (title, sorted(pngs))
    for stem in [*plotting.FIGURES, "structure", "manifold", "tf_targets"]:
        assert f"{stem}.png" in pngs, sorted(pngs)
    # the app itself renders
    shot = tmp_path / "report.png"
    _run_chromium(html.as_uri(), tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.exists() and shot.stat().st_size > 10_000
    keep = os.environ.get("SCLINBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_screenshot.png")
