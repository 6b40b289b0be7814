"""Every page in a real browser, with demo runs at four sizes and many seeds: what AppTest cannot see.

One `streamlit run app.py` server and one headless Chromium serve the whole module (module-scoped), over
20 runs on the bundled demo (NOT ChestMNIST): 17 seeds at 28 px, one run each at 64, 128 and 224 px. Five
are real (core.train, one to three epochs on 64 images: runs end at different epochs); the other 28 px
seeds are copies of one, written through core.runs.record. Each page fails when

- a chart is empty or collapsed: a plot cell of its vega SVG under MIN_PLOT_PX high, or without marks;
- a table is cut off at 1400 px: the data grid scrolls sideways (its scroller is wider than its box);
- the browser console logs a warning or an error (any: the app fetches nothing from outside);
- an exception or st.error is shown.

Full-page screenshots go to tests/artifacts/screenshots/page-*.png. Helpers and the server come from
tests/test_browser.py.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.test_browser import (PAGE_TIMEOUT_MS, REPO, VIEWPORT, assert_no_errors, chromium, main_text, serve,
                                settle, shot, wait_text)

pytestmark = pytest.mark.browser

SHOTS = REPO / "tests" / "artifacts" / "screenshots"  # always: the README's pictures come from tests/test_browser.py

MIN_PLOT_PX = 100
SEEDS_28 = 17  # with one run at each of 64, 128 and 224 px: 20 runs, the heatmap's stated load
PAGES = [("Data & runs", "Data & runs"), ("Train", "Train"), ("Compare", "Compare runs"), ("Run details", "Run details"),
         ("Thresholds", "Thresholds"), ("Saliency", "Saliency"), ("Your images", "Your images"),
         ("Study reports", "Study reports")]


def _copy_as_seed(src, runs_dir, seed: int) -> None:
    """A finished run folder like `src` under another seed, written through core.runs.record (its files, not
    a second training: training 20 real runs takes minutes on a busy 2-core machine)."""
    import shutil

    from core.runs import record as runs

    config = runs.read_config(src)
    config["train"]["seed"] = seed
    dst = runs.new_run_dir(runs_dir, config["train"]["size"], config["train"]["model"], config["train"]["name"])
    runs.write_config(dst, config)
    for row in runs.read_metrics(src):
        runs.append_metrics(dst, row)
    for split in ("val", "test"):
        runs.save_scores(dst, split, *runs.load_scores(src, split))
    runs.write_test_metrics(dst, runs.read_test_metrics(src))
    for path in (runs.checkpoint_path, runs.chosen_thresholds_path):
        shutil.copyfile(path(src), path(dst))
    runs.set_status(dst, "finished")


def _demo_runs(runs_dir) -> None:
    """Real runs on the demo set at 224, 128, 64 and 28 px (two seeds; the 64 px run longest, so the others end
    earlier, as runs of a sweep stopped early do), then more 28 px seeds copied from seed 1; seed 0 newest."""
    from core.data.chestmnist import DEMO_ROOT
    from core.runs import folder as runs_folder
    from core.train import TrainConfig, prepare_run, train

    for size, seed, epochs in [(224, 0, 1), (128, 0, 1), (64, 0, 3), (28, 1, 2)]:
        cfg = TrainConfig(size=size, epochs=epochs, batch_size=64, subset=64, seed=seed, device="cpu", name="demo",
                          data_root=str(DEMO_ROOT), runs_dir=str(runs_dir))
        assert train(prepare_run(cfg)) == "finished"
    seed_1 = runs_folder.list_runs(runs_dir)[0].path
    for seed in range(2, SEEDS_28):
        _copy_as_seed(seed_1, runs_dir, seed)
    cfg = TrainConfig(size=28, epochs=2, batch_size=64, subset=64, seed=0, device="cpu", name="demo",
                      data_root=str(DEMO_ROOT), runs_dir=str(runs_dir))
    assert train(prepare_run(cfg)) == "finished"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(page, console lines, a link to Compare naming all 20 runs) of one browser tab on one server over the demo
    runs, shared by every test here."""
    from urllib.parse import urlencode

    from core.runs import folder as runs_folder
    from core.data.chestmnist import DEMO_ROOT

    tmp = tmp_path_factory.mktemp("browser_pages")
    with chromium() as browser, pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHESTMNIST_AUTOTUNE", "off")
        mp.setenv("CHESTMNIST_CACHE", str(tmp / "cache"))
        t0 = time.monotonic()
        _demo_runs(tmp / "runs")
        print(f"20 demo runs trained in {time.monotonic() - t0:.0f} s")
        with serve(tmp, DEMO_ROOT, tmp / "runs") as url:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text} @ {m.location.get('url', '')}")
                    if m.type in ("warning", "error") else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(url)
            page.get_by_role("heading", name="Data & runs", exact=True).wait_for()
            settle(page)
            runs = urlencode([("runs", r.id) for r in runs_folder.list_runs(tmp / "runs")])
            yield page, console, f"{url}/compare?{runs}"
            context.close()


def open_page(page, name: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    settle(page, quiet_s=1.5)


# Per chart: the height of each plot cell (a vega group holding data marks: the root of a single or layered
# view, a "scope" group per concat or facet cell) and its number of marks.
CELLS_JS = """el => {
    const cells = new Map();
    for (const mark of el.querySelectorAll('g.role-mark')) {
        const cell = mark.parentElement.closest('g.role-frame, g.role-scope');
        if (cell) cells.set(cell, (cells.get(cell) || 0) + mark.children.length);
    }
    return Array.from(cells, ([cell, marks]) => {
        const bg = cell.querySelector(':scope > g > path.background');
        const r = bg ? bg.getBoundingClientRect() : {x: 0, y: 0, width: 0, height: 0};
        return {x: r.x, y: r.y, width: r.width, height: r.height, marks};
    });
}"""
# A data grid cut off at the window's width scrolls sideways: its scroller is wider than the grid's box.
OVERFLOW_JS = """el => { const s = el.querySelector('.dvn-scroller'); return s ? s.scrollWidth - s.clientWidth : 0; }"""
def chart_problems(page) -> list[str]:
    problems = []
    charts = page.locator('[data-testid="stMain"] [data-testid="stVegaLiteChart"]')
    for i in range(charts.count()):
        chart = charts.nth(i)
        if not chart.is_visible():  # in a tab not shown (check_page shows each)
            continue
        chart.scroll_into_view_if_needed()
        chart.locator("svg.marks").first.wait_for(state="attached", timeout=30_000)
        title = chart.locator("g.role-title text").all_inner_texts()[:1]
        for cell in chart.evaluate(CELLS_JS):
            if cell["height"] < MIN_PLOT_PX or not cell["marks"]:
                problems.append(f"chart {i} {title}: plot {cell['height']:.0f} px high, {cell['marks']} marks")
    return problems


def table_problems(page) -> list[str]:
    grids = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]')
    problems = []
    for i in range(grids.count()):
        grid = grids.nth(i)
        if not grid.is_visible():
            continue
        grid.scroll_into_view_if_needed()
        over = grid.evaluate(OVERFLOW_JS)
        if over > 1:
            header = grid.locator("table tr").first.evaluate(
                "r => Array.from(r.querySelectorAll('th'), c => c.innerText)")
            problems.append(f"table {i} {header}: {over:.0f} px of columns cut off")
    return problems


def check_page(page, console: list[str], where: str, shot_name: str) -> None:
    """Screenshot (each tab bar on its first tab), then fail on a collapsed or empty chart or a cut-off table in
    any tab, a console warning or error, or a shown error."""
    assert_no_errors(page, where)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    shot(page, shot_name, folder=SHOTS)
    problems = chart_problems(page) + table_problems(page)
    tabs = page.locator('[data-testid="stMain"] [role="tab"]')
    for i in range(tabs.count()):  # a chart or table in a hidden tab has no size: each tab is shown in turn
        if tabs.nth(i).get_attribute("aria-selected") != "true":
            tabs.nth(i).click()
            settle(page, quiet_s=0.5)
            problems += [f"tab {tabs.nth(i).inner_text()!r}: {p}" for p in chart_problems(page) + table_problems(page)]
    noise = list(console)
    console.clear()
    assert not problems and not noise, f"{where}:\n" + "\n".join(problems + [f"console {n}" for n in noise])


@pytest.mark.parametrize("name,heading", [p for p in PAGES if p[0] not in ("Compare", "Saliency")])
def test_page_renders_whole(app, name, heading):
    page, console, _ = app
    open_page(page, name, heading)
    check_page(page, console, name, "page-" + re.sub(r"\W+", "-", name.lower()).strip("-"))


# Opened at /compare, Streamlit's frontend looks for its server there first (a 404 each for _stcore/health and
# host-config) and then at /: its way of finding a base path, on any link to a page, not this app's doing.
PROBE_404 = re.compile(r"status of 404 \(Not Found\) @ https?://[^/]+/compare/_stcore/(health|host-config)$")


def test_compare_with_20_runs(app):
    """Compare opened by a link naming all 20 runs (by default it picks one recipe's runs, and the 28 px seeds
    trained 2 epochs, the other sizes 1 or 3: other recipes): the per-class heatmap names all 14 findings and all
    20 runs, level, with rows a reader can tell apart."""
    page, console, link = app
    page.goto(link)
    page.get_by_role("heading", name="Compare runs", exact=True).wait_for()
    console[:] = [line for line in console if not PROBE_404.search(line)]
    wait_text(page, "Test AUC per class", 120)
    settle(page, quiet_s=1.5)
    heading = page.get_by_role("heading", name="Test AUC per class", exact=True)
    heat = heading.locator("xpath=following::*[@data-testid='stVegaLiteChart'][1]")
    heat.scroll_into_view_if_needed()
    labels = heat.evaluate("""el => Array.from(el.querySelectorAll('g.role-axis-label text'),
        t => ({text: t.textContent, rotated: /rotate\\((?!0\\))/.test(t.getAttribute('transform') || '')}))""")
    texts = [lab["text"] for lab in labels]
    from core.data.chestmnist import CLASS_NAMES

    assert all(c in texts for c in CLASS_NAMES), f"class labels shown: {texts}"
    assert len(texts) >= len(CLASS_NAMES) + 20, f"run labels missing: {texts}"
    assert not [lab for lab in labels if lab["rotated"]], "rotated axis labels"
    cells = heat.evaluate(CELLS_JS)
    assert cells and min(c["height"] for c in cells) >= len(CLASS_NAMES) * 18, cells  # a row per class, 18 px or more
    check_page(page, console, "Compare (20 runs)", "page-compare")


def curve_readout(page) -> str:
    """The learning-curve tooltip at the last epoch of the first panel, as text."""
    chart = page.get_by_role("heading", name="Learning curves", exact=True).locator(
        "xpath=following::*[@data-testid='stVegaLiteChart'][1]")
    chart.scroll_into_view_if_needed()
    cell = chart.evaluate(CELLS_JS)[0]  # the first panel
    tip = page.locator("#vg-tooltip-element")
    for dx in (3, 8, 15):  # the rule nearest the pointer: the last epoch, at the panel's right edge
        page.mouse.move(cell["x"] + cell["width"] - dx, cell["y"] + cell["height"] / 2)
        page.wait_for_timeout(600)
        if tip.count() and tip.is_visible() and "epoch" in tip.inner_text():
            return tip.inner_text()
    raise AssertionError("no learning-curve readout on hover")


def test_compare_curve_readout_gives_logged_and_smoothed(app):
    """Hovering a learning curve reads each run's logged and smoothed value at that epoch; runs that ended
    earlier are left out, not read as NaN (the 64 px run trained 3 epochs, the others 1 or 2)."""
    page, console, link = app
    if page.url != link:  # on its own (-k readout), not after test_compare_with_20_runs: the 64 px run is in the link
        page.goto(link)
        page.get_by_role("heading", name="Compare runs", exact=True).wait_for()
        wait_text(page, "Learning curves", 120)
        settle(page, quiet_s=1.5)
        console[:] = [line for line in console if not PROBE_404.search(line)]
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Smoothing").locator('input[type="range"]')
    slider.focus()
    for _ in range(10):  # 0.5
        slider.press("ArrowRight")
    settle(page, quiet_s=1.5)
    text = curve_readout(page)
    page.mouse.move(0, 0)
    assert "NaN" not in text, text
    assert re.search(r"64 px[^\n]*\n?[^\n]*\d\.\d{4} logged, \d\.\d{4} smoothed", text), text
    assert "28 px" not in text, f"a 28 px run (2 epochs) read at epoch 3:\n{text}"


def test_saliency(app):
    """Saliency opens on a true positive at the run's saved threshold, shows the image at every size (one run
    per size, not the first runs of one size), and its deletion/insertion charts and checks table fit."""
    page, console, _ = app
    open_page(page, "Saliency", "Saliency")
    wait_text(page, "Same image at every resolution", 120)
    settle(page, quiet_s=1.5)
    text = main_text(page)
    opened = re.search(r"Opened on test image (\d+): the most confident true positive for (\w+)", text)
    assert opened, text[:2000]
    findings = re.search(r"True findings: (.*)", text).group(1)
    assert opened.group(2) in findings, (opened.groups(), findings)
    p, thr = map(float, re.search(r"p = (\d\.\d+) \(threshold (\d\.\d+)\)", text).groups())
    assert p >= thr, (p, thr)
    captions = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').all_inner_texts()
    sizes = [int(m.group(1)) for c in captions if (m := re.fullmatch(r"(?:★ )?(\d+) px · res-cnn · p = \d\.\d{3}", c))]
    assert sizes == [28, 64, 128, 224], captions
    page.get_by_text("Checks over a set of images", exact=False).click()
    page.get_by_role("button", name="Run the checks").click()
    wait_text(page, "Near 0 after the head is randomised", 180)
    settle(page, quiet_s=1.5)
    check_page(page, console, "Saliency", "page-saliency")
