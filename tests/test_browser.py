"""End to end in a real browser: the Streamlit app served as users run it, driven by headless Chromium.

The AppTest-based tests (tests/test_app_*.py) run each page's script on its own; this one runs
`streamlit run app.py` and clicks through every page the way a user does: look at the data,
train a 28 and a 64 px run (real background processes), compare them, move a threshold slider,
look at Grad-CAM, and see both runs listed as finished. Any exception or st.error on any page
fails it. Screenshots of each page go to tests/artifacts/screenshots/ (git-ignored); with
UPDATE_SCREENSHOTS=1 they refresh the README's docs/screenshots/ instead.

Data: the real NIH radiographs of the bundled demo (demo/, in every clone; NOT ChestMNIST) at 28
and 64 px, linked into a tmp data root (the npy cache goes to a tmp folder).

Chromium: Debian's `chromium` (Playwright's own download is not used). Missing -> skipped,
unless REQUIRE_BROWSER=1 (CI), then failed. Deselect with `-k "not browser"`.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "tests/artifacts") / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TRAIN_TIMEOUT_S = 240  # both runs, on a busy 2-core machine
PAGE_TIMEOUT_MS = 90_000  # one page load (first loads import torch, load data, measure speed, ...)

# The page is busy while any of these is on screen: Streamlit's "Running..." icon, a cache spinner,
# a loading skeleton, or elements greyed out as stale during a rerun.
BUSY = ('[data-testid="stStatusWidgetRunningIcon"], [data-testid="stSpinner"], [data-testid="stSkeleton"], '
        '[data-testid="stAppSkeleton"], [data-stale="true"]')


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip() == "ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(tmp_path: Path, data_root: Path, runs_dir: Path):
    """`streamlit run app.py` on a free localhost port over `data_root` and `runs_dir`; yields its base url.
    Torn down always, and every run it started is asked to stop so no detached trainer outlives the test."""
    port = _free_port()
    env = {**os.environ, "CHESTMNIST_ROOT": str(data_root), "CHESTMNIST_RUNS": str(runs_dir),
           "CHESTMNIST_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Streamlit did not come up:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        from core.runs import record as runs
        from core.runs import folder as runs_folder

        if runs_dir.is_dir():
            for r in runs_folder.list_runs(runs_dir):
                if r.state in ("running", "queued"):
                    runs.request_stop(r.path)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def server(tmp_path):
    """The app over the bundled demo's 28 and 64 px files (the flow trains every size present) and an empty
    runs folder; yields (base url, runs dir, data root)."""
    from core.data import chestmnist as D

    data_root = tmp_path / "data"
    data_root.mkdir()
    for size in (28, 64):
        (data_root / D.npz_name(size)).symlink_to(D.DEMO_ROOT / D.npz_name(size))
    runs_dir = tmp_path / "runs"
    with serve(tmp_path, data_root, runs_dir) as url:
        yield url, runs_dir, data_root


@contextlib.contextmanager
def chromium():
    """Headless Chromium; a skip (a failure under REQUIRE_BROWSER=1) when it or playwright is missing."""
    exe, missing = _chromium(), None
    if exe is None:
        missing = "Chromium not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright not installed (pip install -r requirements.txt)"
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing}, and REQUIRE_BROWSER=1 says the browser test must run.")
        pytest.skip(f"{missing}: the browser tests need it.")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


# --- helpers ---------------------------------------------------------------------------------

def settle(page, quiet_s: float = 1.0, timeout_s: float = 90) -> None:
    """Wait until nothing is busy (see BUSY) for `quiet_s` in a row."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(BUSY).count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        page.wait_for_timeout(150)
    raise AssertionError(f"page still busy after {timeout_s:.0f} s:\n{main_text(page)[:2000]}")


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def assert_no_errors(page, where: str) -> None:
    for sel, what in (('[data-testid="stException"]', "exception"), ('[data-testid="stAlertContentError"]', "st.error")):
        loc = page.locator(sel)
        if loc.count():
            pytest.fail(f"{what} on {where}: " + "\n---\n".join(loc.all_inner_texts()))


def goto(page, name: str, heading: str) -> None:
    """Open a page from the sidebar navigation and wait for its title and for it to settle."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    settle(page)


def shot(page, name: str, wait: bool = True, folder: Path = SHOTS) -> None:
    """Screenshot of the whole page into <folder>/<name>.png.

    Streamlit scrolls its main area, not the document, so a plain full-page screenshot is just the
    viewport: the viewport is made as tall as the content for the picture, then put back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover tooltips in the picture
    height = page.evaluate("""() => Math.max(document.documentElement.scrollHeight,
        ...Array.from(document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]'),
                      el => el.scrollHeight))""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height), 8000))})
    try:
        page.wait_for_timeout(400)  # charts re-layout after the resize
        if wait:
            settle(page, quiet_s=0.5)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)


def wait_text(page, pattern: str, timeout_s: float, where: str = '[data-testid="stMain"]') -> str:
    """Poll the text of `where` until `pattern` (a regex) matches; the text."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.locator(where).inner_text()
        if re.search(pattern, text):
            return text
        assert_no_errors(page, f"{page.url} (waiting for {pattern!r})")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} after {timeout_s:.0f} s; page text:\n{text[:3000]}")
        page.wait_for_timeout(500)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(page, quiet_s=0.5)
    assert box.input_value() == str(value), f"{label}: {box.input_value()!r}"


def grid_rows(page, nth: int = 0) -> list[list[str]]:
    """Header and rows of the nth st.dataframe, as text. The glide data grid draws on a canvas; its
    accessible table in the DOM holds the rendered (visible) rows and columns."""
    grid = page.locator('[data-testid="stDataFrame"]').nth(nth)
    if grid.is_visible():  # (one in a hidden tab is not)
        grid.scroll_into_view_if_needed()
    grid.locator("table tr").first.wait_for(state="attached")
    return grid.locator("table tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('th, td'), c => c.innerText.trim()))")


# --- the test --------------------------------------------------------------------------------

def test_browser_end_to_end(browser, server):  # browser first: no server started just to skip
    url, runs_dir, data_root = server
    t0 = time.monotonic()

    def step(what: str) -> None:
        print(f"[{time.monotonic() - t0:5.0f} s] {what}", flush=True)

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))

    # The server's first request opens a page by URL (a bookmark, a reload): app.py still runs it, with
    # its navigation and sidebar settings, not Streamlit's legacy pages/ folder mode (app, common, ...).
    page.goto(f"{url}/compare")
    page.get_by_role("heading", name="Compare runs", exact=True).wait_for()
    settle(page)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Data & runs" in nav and "common" not in nav, nav
    assert page.get_by_label("Data root", exact=True).input_value() == str(data_root)
    assert_no_errors(page, "Compare (opened by URL)")
    step("Compare opened by URL first: app.py's navigation and sidebar")

    # Data & runs: both sizes present, no runs yet.
    page.goto(url)
    page.get_by_role("heading", name="Data & runs", exact=True).wait_for()
    settle(page)
    for size in (28, 64):
        page.get_by_role("tab", name=f"{size} px").wait_for()
    text = main_text(page)
    assert str(data_root) in text
    assert "No runs yet" in text
    assert_no_errors(page, "Data & runs")
    step("Data & runs: 28 and 64 px present, no runs")

    # Train: a tiny recipe, then "same recipe at every size" (one background queue: 28 then 64 px).
    goto(page, "Train", "Train")
    wait_text(page, "Estimated cost on this machine", 120)
    step("Train: page and its speed estimate loaded")
    # A new batch size re-measures the speed (~10 s on a busy 2-core machine; subset and epochs are
    # arithmetic on the cached speed), so the default batch size is kept unless it is large.
    # Enough work (6 epochs of the demo's 397 training images) that the live view, refreshed every
    # 2 s, is on screen while a run trains even on an idle machine: 2 epochs of 200 images could finish
    # between two refreshes.
    set_number(page, "Epochs", 6)
    if int(page.get_by_label("Batch size", exact=True).input_value()) > 128:
        set_number(page, "Batch size", 128)
    set_number(page, "Training subset (0 = all)", 0)
    settle(page)
    assert_no_errors(page, "Train (recipe)")
    step("Train: recipe set (6 epochs, all training images)")
    page.get_by_role("button", name=re.compile(r"^Same recipe at every size \(28, 64 px\)")).click()
    wait_text(page, "Started in background process", 60)
    step("Train: sweep started")
    # The live view (a fragment refreshed every 2 s) shows progress and curves, then both runs finished.
    done = re.compile(r"No run is training or queued[\s\S]*Recently finished")
    saw_progress = live_shot = False
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while not done.search(text := main_text(page)):
        assert time.monotonic() < deadline, f"training not finished after {TRAIN_TIMEOUT_S} s:\n{text[:3000]}"
        assert "Stopped, interrupted or failed" not in text, text
        assert_no_errors(page, "Train (training)")
        if re.search(r"epoch \d/6 · (batch|validating)", text):
            saw_progress = True
            # For the README: the 64 px run training while the 28 px run is done (progress bar + its curves).
            if (not live_shot and "Recently finished" in text and re.search(r"64 px · res-cnn · running", text)
                    and page.locator('[data-testid="stMain"] [data-testid="stVegaLiteChart"]').count()
                    and not page.locator(BUSY).count()):
                shot(page, "train-live", wait=False)
                live_shot = True
                step("Train: live view captured")
        page.wait_for_timeout(500)
    step("Train: both runs finished")
    assert saw_progress, "the live view never showed an epoch's progress"
    settle(page)
    finished = grid_rows(page, -1)
    header, rows = finished[0], finished[1:]
    assert sorted(r[header.index("size (px)")] for r in rows) == ["28", "64"], finished
    assert all("sweep" in r[header.index("run")] and r[header.index("epochs")] == "6" for r in rows), finished
    assert_no_errors(page, "Train (finished)")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "train")

    # Compare: curves, trade-off and per-class charts drawn; the summary lists both runs.
    goto(page, "Compare", "Compare runs")
    wait_text(page, "Test AUC per class", 60)
    settle(page)
    charts = page.locator('[data-testid="stMain"] [data-testid="stVegaLiteChart"]')
    assert charts.count() >= 3, charts.count()  # learning curves, AUC vs compute, per-class AUC
    for i in range(charts.count()):
        charts.nth(i).scroll_into_view_if_needed()
        charts.nth(i).locator("canvas, svg").first.wait_for(state="attached", timeout=30_000)
    summary = grid_rows(page, 2)  # after the paired differences and the seed groups
    header, rows = summary[0], summary[1:]
    assert [r[header.index("run")] for r in rows] == ["28 px · res-cnn", "64 px · res-cnn"], summary
    assert all(r[header.index("epochs")] == "6" for r in rows), summary
    assert_no_errors(page, "Compare")
    step("Compare: 3+ charts drawn, summary lists the 28 and 64 px runs")
    shot(page, "compare")

    # Which pixels matter: scored on request, then the effective-resolution and per-finding charts, neither
    # collapsed (AppTest cannot see a chart's height).
    before = charts.count()
    page.get_by_role("button", name=re.compile(r"^Score \d+ degraded test sets")).click()
    wait_text(page, "Which findings need pixels", 120)
    settle(page)
    assert charts.count() == before + 2, charts.count()
    for i in range(charts.count()):
        charts.nth(i).scroll_into_view_if_needed()
        charts.nth(i).locator("canvas, svg").first.wait_for(state="attached", timeout=30_000)
        box = charts.nth(i).bounding_box()
        assert box and box["height"] >= 100, (i, box)
    assert re.search(r"28 px\.", main_text(page)), "no information-or-training sentence for 28 px"
    assert_no_errors(page, "Compare, which pixels matter")
    step("Compare: effective-resolution and per-finding charts drawn, the 28 px gap in words")
    for heading, name in (("Which pixels matter", "compare-pixels"), ("Which findings need pixels", "compare-findings")):
        page.get_by_role("heading", name=heading, exact=True).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{name}.png"))

    # Thresholds: nudge the first class's slider with the keyboard; its row in the table follows.
    goto(page, "Thresholds", "Thresholds")
    before = grid_rows(page, 0)
    slider = page.locator('[data-testid="stSlider"]').first
    value = slider.locator('[data-testid="stSliderThumbValue"]')
    first_class = before[1][0]
    assert slider.locator("label").inner_text().strip() == first_class
    start = float(value.inner_text())
    thumb = slider.locator('input[type="range"]')
    thumb.focus()
    for _ in range(5):
        thumb.press("ArrowRight")
    settle(page)
    moved = float(value.inner_text())
    assert moved > start, (start, moved)
    # Each key press is a rerun: the table may show a press in between (0.521 of 0.525) before it shows the last.
    col, deadline = before[0].index("Threshold"), time.monotonic() + 30
    while (float((after := grid_rows(page, 0))[1][col]) != pytest.approx(moved, abs=1e-3)
           and time.monotonic() < deadline):
        page.wait_for_timeout(300)
    assert after[1][0] == first_class and float(after[1][col]) == pytest.approx(moved, abs=1e-3), (moved, after[:2])
    assert before[2:] == after[2:], "moving one class's slider changed other classes' rows"
    assert "method: manual" in main_text(page)
    assert_no_errors(page, "Thresholds")
    step(f"Thresholds: {first_class} {start:.3f} -> {moved:.3f}, table row followed")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    shot(page, "thresholds")

    # Saliency: the test image and its Grad-CAM, and the same image through the other run.
    goto(page, "Saliency", "Saliency")
    wait_text(page, "Same image at every resolution", 60)
    settle(page)
    images = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    assert images.count() >= 4, images.count()  # image + Grad-CAM, then a panel per resolution (selected first)
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=images.nth(i).element_handle(),
                               timeout=30_000)
    captions = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').all_inner_texts()
    panels = [c for c in captions if re.fullmatch(r"(★ )?\d+ px · res-cnn · p = \d\.\d{3}", c)]
    assert sum("Grad-CAM" in c for c in captions) == 1 and len(panels) == 2 and panels[0].startswith("★"), captions
    assert_no_errors(page, "Saliency")
    step("Saliency: image, Grad-CAM and the other resolution's Grad-CAM rendered")
    shot(page, "saliency")

    # Your images: a demo radiograph uploaded as a PNG file, as a user drops one, through the newest run.
    from PIL import Image

    from core.data import chestmnist as D

    upload = runs_dir.parent / "my_xray.png"
    Image.fromarray(D.load(data_root, 64).test.images[0]).save(upload)
    goto(page, "Your images", "Your images")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
    wait_text(page, r"As the \d+ px model sees it", 90)
    settle(page)
    assert "my_xray.png" in main_text(page) and grid_rows(page, 0)[0][:2] == ["finding", "probability"], grid_rows(page, 0)[:1]
    assert_no_errors(page, "Your images")
    step("Your images: an uploaded PNG scored with its findings table and maps")
    shot(page, "predict")

    # Run details: the page's title is its navigation name; the run's curves and its export offer are drawn.
    goto(page, "Run details", "Run details")
    assert_no_errors(page, "Run details")
    step("Run details: opened under its navigation name")
    shot(page, "run")

    # Back to Data & runs: both runs listed as finished, with test metrics.
    goto(page, "Data & runs", "Data & runs")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    table = grid_rows(page, -1)
    header, rows = table[0], table[1:]
    assert [r[header.index("status")] for r in rows] == ["finished", "finished"], table
    assert all(0 < float(r[header.index("test AUC")]) <= 1 for r in rows), table
    assert_no_errors(page, "Data & runs (end)")
    step("Data & runs: 2 finished runs listed")
    shot(page, "home")

    assert not page_errors, page_errors
    context.close()
