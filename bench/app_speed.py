"""The app's own speed: first paint after a start, the Train page's first visit, and what the first page imports.

A real `streamlit run app.py` (a fresh server, as after a clone) is opened in headless Chromium
(Playwright, the browser test's launch arguments). Timed from the first request: the home page's
heading on screen (first paint), then the Train page's heading and its recipe after a click in
the navigation (first visit), its Train button (the page usable), and its speed estimate once it has been measured (in
the background: the page never waits for it), and that estimate against the CLI's `--estimate` for the
same recipe, measured right after (the two must agree within 20%); and, on a fresh server again, the
Train page's first visit after the first page was read for a few seconds. The baseline is a bare one-line Streamlit app
started and opened the same way in the same run: what the framework alone costs on this machine.
The import figures say whether torch is loaded before the first page is drawn.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, Row, at_most

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGET_S = 2.0
READ_S = 5  # seconds a user spends on the first page before opening Train


def import_figures(repo: Path = REPO, module: str = "ui.common") -> dict:
    """Seconds to import `module` in a fresh interpreter, and whether that import loads torch. Figures dict."""
    code = (f"import sys, time; t = time.perf_counter(); import {module}; "
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(repo)}).stdout.split()
    return {f"app_speed.import.{module}_s": float(out[0]), f"app_speed.import.{module}_loads_torch": out[1] == "True"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(script: str, cwd: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """A streamlit server for `script` in `cwd`, up (health check answered) but not yet asked for a page."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"streamlit run {script} did not answer within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def cli_images_per_s(repo: Path, env: dict, size: int = 28) -> float:
    """`python -m core.train --estimate` for the Train page's default recipe at `size`: its training images/s
    (the speed both estimates rest on; seconds per epoch are printed rounded to the second)."""
    out = subprocess.run([sys.executable, "-m", "core.train", "--size", str(size), "--estimate"], cwd=repo, env=env,
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"([\d,.]+) train img/s", out)
    if not found:
        raise RuntimeError(f"no 'train img/s' figure in the CLI's estimate: {out!r}")
    return float(found.group(1).replace(",", ""))


def _heading(page, name: str, timeout_s: float) -> None:
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=timeout_s * 1000)


@contextmanager
def _served(browser, script: str, cwd: Path, env: dict, **page_kw):
    """(a new browser page, the URL of a fresh server for `script`), the server stopped afterwards."""
    proc, url = _serve(script, cwd, env)
    try:
        yield browser.new_page(**page_kw), url
    finally:
        _stop(proc)


def _open_train(page, timeout_s: float) -> float:
    """Click Train in the navigation; seconds until its heading and recipe are on screen."""
    t = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Train", exact=True).click()
    _heading(page, "Train", timeout_s)
    page.get_by_label("Epochs", exact=True).wait_for(timeout=timeout_s * 1000)
    return time.perf_counter() - t


def paint_figures(workdir: Path, repo: Path = REPO, timeout_s: float = 120, read_s: float | None = READ_S) -> dict:
    """First paint of the app and of a bare Streamlit app, and the Train page's first visit, in seconds
    from the request (a fresh server each); with `read_s`, a third fresh server for the visit after
    reading the first page that long (None: not measured, one server fewer). Figures dict."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CHESTMNIST_RUNS": str(workdir / "runs"), "CHESTMNIST_SETTINGS": str(workdir / "settings.json"),
           "CHESTMNIST_ROOT": "demo"}
    bare = workdir / "bare.py"
    bare.write_text("import streamlit as st\nst.title('Bare')\n")
    wide = {"viewport": {"width": 1400, "height": 900}}
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                    headless=True, args=CHROMIUM_ARGS)
        try:
            with _served(browser, str(bare), workdir, env) as (page, url):
                t = time.perf_counter()
                page.goto(url)
                _heading(page, "Bare", timeout_s)
                out["app_speed.bare_first_paint_s"] = time.perf_counter() - t
            with _served(browser, "app.py", repo, env, **wide) as (page, url):
                t = time.perf_counter()
                page.goto(url)
                _heading(page, "Data & runs", timeout_s)
                out["app_speed.first_paint_s"] = time.perf_counter() - t
                t = time.perf_counter()
                out["app_speed.train_first_visit_s"] = _open_train(page, timeout_s)
                # Usable: the Train button, drawn under the estimate (before it was measured in the background,
                # the page stopped above it until the speed was measured).
                page.get_by_role("button", name="Train", exact=True).wait_for(timeout=timeout_s * 1000)
                out["app_speed.train_usable_s"] = time.perf_counter() - t
                try:
                    page.get_by_text("Training images/s").first.wait_for(timeout=timeout_s * 1000)
                    out["app_speed.train_estimate_shown_s"] = time.perf_counter() - t
                    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Training images/s").first
                    out["app_speed.page_img_s"] = float(metric.inner_text().split("images/s", 1)[1].replace(",", ""))
                except PlaywrightTimeout:  # the other figures stand; these are missing from the table
                    out["app_speed.train_estimate_shown_s"] = out["app_speed.page_img_s"] = None
            if out["app_speed.page_img_s"] is not None:  # the CLI's estimate of the same recipe, right after
                out["app_speed.cli_img_s"] = cli_images_per_s(repo, env)
            # A reader: the home page is read for `read_s` before Train is clicked, on a fresh server again.
            # app.py warms the training stack up in the background once the first page is drawn.
            if read_s is not None:
                with _served(browser, "app.py", repo, env, **wide) as (page, url):
                    page.goto(url)
                    _heading(page, "Data & runs", timeout_s)
                    page.wait_for_timeout(read_s * 1000)
                    out["app_speed.train_visit_after_reading_s"] = _open_train(page, timeout_s)
        finally:
            browser.close()
    return out

def run(ctx: Context) -> list[Row]:
    rows = []
    f = import_figures()
    rows.append(Row("app_speed.import.ui.common_s", f["app_speed.import.ui.common_s"], "s", note=(
        "import of ui.common (what app.py imports before the first page) in a fresh interpreter; "
        f"loads torch: {f['app_speed.import.ui.common_loads_torch']}")))
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        rows.append(Row("app_speed.first_paint_s", None, "s", note="Chromium not installed: not measured"))
        return rows
    ctx.log("app_speed: a fresh `streamlit run app.py` and a bare app, opened in headless Chromium")
    p = paint_figures(ctx.workdir / "app_speed")
    bare = p["app_speed.bare_first_paint_s"]
    rows.append(Row("app_speed.first_paint_s", p["app_speed.first_paint_s"], "s", bare,
                    bare / p["app_speed.first_paint_s"], f"<= {TARGET_S:g} s", at_most(p["app_speed.first_paint_s"], TARGET_S),
                    "request to the Data & runs heading on a fresh server; baseline: a bare one-line app the same way "
                    "(ratio < 1: slower than the bare app)"))
    rows.append(Row("app_speed.train_first_visit_s", p["app_speed.train_first_visit_s"], "s", None, None,
                    f"<= {TARGET_S:g} s", at_most(p["app_speed.train_first_visit_s"], TARGET_S),
                    "click on Train to its heading and recipe (first visit after the start)"))
    rows.append(Row("app_speed.train_usable_s", p["app_speed.train_usable_s"], "s", note=(
        "click on Train to its Train button on screen (the page usable)")))
    rows.append(Row("app_speed.train_estimate_shown_s", p["app_speed.train_estimate_shown_s"], "s", note=(
        "click on Train to the measured speed on screen (measured in the background; informational)")))
    rows.append(Row("app_speed.train_visit_after_reading_s", p["app_speed.train_visit_after_reading_s"], "s", None, None,
                    f"<= {TARGET_S:g} s", at_most(p["app_speed.train_visit_after_reading_s"], TARGET_S),
                    f"a fresh server again: the first page read for {READ_S} s (app.py warms the training stack up "
                    "meanwhile), then click on Train to its heading and recipe"))
    page_ips, cli_ips = p["app_speed.page_img_s"], p.get("app_speed.cli_img_s")
    if page_ips is not None and cli_ips is not None:
        rows.append(Row("app_speed.page_vs_cli_estimate", page_ips, "img/s", cli_ips, page_ips / cli_ips, "0.8x-1.25x",
                        0.8 <= page_ips / cli_ips <= 1.25,
                        "training images/s behind the Train page's estimate (28 px, its default recipe, on the demo) "
                        "vs `python -m core.train --size 28 --estimate` run right after; one measurement each"))
    return rows
