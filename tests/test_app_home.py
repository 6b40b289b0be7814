"""pages/home.py (Data & runs) through streamlit's AppTest, on generated data and real tiny runs."""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import chestmnist as D
from core.runs import record as runs
from core.runs import folder as runs_folder
from core import settings
from tests.synthetic import write_planted


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_first_start_with_nothing_shows_guidance(open_page, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    at = open_page("home.py", root, tmp_path / "runs").run()
    assert not at.exception
    assert not at.error
    infos = " ".join(texts(at.info))
    assert "No ChestMNIST file" in infos and "chestmnist.npz" in infos
    assert "No runs yet" in infos
    labels = [b.label for b in at.button]
    for size in D.SIZES:  # every size missing: each gets a download button with its size in MB
        assert f"Download {size} px ({D.approx_mb(size):,} MB)" in labels
    assert at.button(key="import_go")  # the importer is there too


def test_missing_data_folder_is_an_error(open_page, tmp_path):
    at = open_page("home.py", tmp_path / "nowhere", tmp_path / "runs").run()
    assert not at.exception
    assert any(str(tmp_path / "nowhere") in e and "does not exist" in e for e in texts(at.error))


def test_corrupt_file_shows_its_error(open_page, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "chestmnist.npz").write_bytes(b"not a zip file at all")
    at = open_page("home.py", root, tmp_path / "runs").run()
    assert not at.exception
    errors = texts(at.error)
    assert any(str(root / "chestmnist.npz") in e and "corrupt" in e for e in errors), errors


def test_sizes_counts_and_prevalence_match_core(open_page, data_root, tmp_path):
    at = open_page("home.py", data_root, tmp_path / "runs").run()
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["28 px", "64 px"]
    # Download buttons only for the missing sizes.
    labels = [b.label for b in at.button]
    assert not any(label.startswith("Download 28 px") or label.startswith("Download 64 px") for label in labels)
    assert any(label.startswith("Download 128 px") for label in labels)
    metrics = {(m.label, m.value) for m in at.metric}
    assert ("train images", "256") in metrics and ("val images", "96") in metrics and ("total", "448") in metrics
    # Generated data is not the official release, and the page says so.
    assert any("differ from the official ChestMNIST" in i for i in texts(at.info))
    # Only the open tab is drawn (a first visit loads one size); opening the other draws that one.
    for size in (28, 64):
        at.session_state["home_size_tab"] = f"{size} px"
        at.run()
        assert not at.exception and not at.error
        (table,) = [df.value for df in at.dataframe if "train prevalence" in df.value.columns]
        d = D.load(data_root, size)
        assert list(table["class"]) == list(D.CLASS_NAMES)
        for s in D.SPLITS:
            np.testing.assert_allclose(table[f"{s} prevalence"].to_numpy(), D.prevalence(d.split(s).labels))
            np.testing.assert_array_equal(table[f"{s} positives"].to_numpy(), d.split(s).labels.sum(axis=0))
        # One montage per class, captioned with the class name; one prevalence chart.
        captions = [img.proto.imgs[0].caption for img in at.image]
        assert len(captions) == D.N_CLASSES
        assert all(c.split(" ")[0] in D.CLASS_NAMES for c in captions)
        assert len(at.get("vega_lite_chart")) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_shows_instructions(open_page, data_root, tmp_path, monkeypatch):
    """The real download code against a closed local port: no external network is touched."""
    root = tmp_path / "data"
    root.mkdir()
    url, md5 = D.download_url(128)
    monkeypatch.setattr(D, "download_url", lambda size: (f"http://127.0.0.1:{closed_port()}/{D.npz_name(size)}", md5))
    at = open_page("home.py", root, tmp_path / "runs").run()
    at.button(key="download-128").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1
    assert "chestmnist_128.npz" in errors[0] and str(root.resolve()) in errors[0] and "Zenodo" in errors[0]
    assert list(root.iterdir()) == []  # no .part or half file left behind


def test_download_error_always_carries_instructions(open_page, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()

    def fail(root_, size, progress=None, timeout=30.0):
        raise D.DataError("The downloaded file does not match its MD5; it was deleted. Try again.")
    monkeypatch.setattr(D, "download", fail)
    at = open_page("home.py", root, tmp_path / "runs").run()
    at.button(key="download-64").click().run()
    (error,) = texts(at.error)
    assert "MD5" in error and D.offline_instructions(root, 64) in error


def test_download_success_feeds_progress_and_shows_the_new_size(open_page, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    calls = []

    def fake(root_, size, progress=None, timeout=30.0):
        for done in (0, 50, 100):
            progress(done, 100)
            calls.append(done)
        return write_planted(root_, size, n=(24, 12, 12))
    monkeypatch.setattr(D, "download", fake)
    at = open_page("home.py", root, tmp_path / "runs").run()
    at.button(key="download-28").click().run()
    assert not at.exception and not at.error
    assert calls == [0, 50, 100]
    assert any("Downloaded" in s and "chestmnist.npz" in s for s in texts(at.success))
    assert [t.label for t in at.tabs] == ["28 px"]
    assert ("train images", "24") in {(m.label, m.value) for m in at.metric}


def write_nih_folder(base: Path) -> tuple[Path, Path]:
    """12 patients x 2 PNGs in NIH layout (one CSV row names a missing file); (images dir, csv)."""
    images = base / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    findings = ["No Finding", "Effusion|Infiltration", "Cardiomegaly", "Pleural_Thickening", "Mass", "Nodule|Edema"]
    rows = []
    for patient in range(1, 13):
        for k in range(2):
            name = f"{patient:08d}_{k:03d}.png"
            Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).save(images / name)
            rows.append({"Image Index": name, "Finding Labels": findings[(patient + k) % len(findings)],
                         "Patient ID": patient})
    rows.append({"Image Index": "00000099_000.png", "Finding Labels": "Mass", "Patient ID": 99})
    (images / "notes.txt").write_text("not an image")
    csv = base / "Data_Entry.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return images, csv


def test_importer_writes_npz_and_reports(open_page, tmp_path):
    images, csv = write_nih_folder(tmp_path / "nih")
    out = tmp_path / "imported"
    (tmp_path / "data").mkdir()
    at = open_page("home.py", tmp_path / "data", tmp_path / "runs").run()
    at.text_input(key="import_images").input(str(images))
    at.text_input(key="import_csv").input(str(csv))
    at.selectbox(key="import_size").select(28)
    at.text_input(key="import_out").input(str(out))
    at.button(key="import_go").click().run()
    assert not at.exception
    assert not at.error, texts(at.error)
    d = D.load(out, 28)  # the written file is a valid data root
    counts = next(df.value for df in at.dataframe if list(df.value.columns) == ["split", "images"])
    assert dict(zip(counts["split"], counts["images"])) == {s: len(d.split(s)) for s in D.SPLITS}
    assert sum(len(d.split(s)) for s in D.SPLITS) == 24
    skipped = next(df.value for df in at.dataframe if list(df.value.columns) == ["image", "reason"])
    assert skipped.to_dict("records") == [{"image": "00000099_000.png", "reason": "file not found"}]
    ignored = next(df.value for df in at.dataframe if list(df.value.columns) == ["file", "reason"])
    assert list(ignored["file"]) == ["notes.txt"]
    assert any(str(out / "chestmnist.npz") in s for s in texts(at.success))
    # Imported somewhere else than the data root: offer to switch to it.
    at.button(key="import_use_root").click().run()
    assert at.session_state["data_root"] == str(out)
    assert [t.label for t in at.tabs] == ["28 px"]


def test_importer_error_is_shown_not_raised(open_page, tmp_path):
    images, _ = write_nih_folder(tmp_path / "nih")
    at = open_page("home.py", tmp_path / "data", tmp_path / "runs").run()
    at.text_input(key="import_images").input(str(images))
    at.text_input(key="import_csv").input(str(tmp_path / "missing.csv"))
    at.button(key="import_go").click().run()
    assert not at.exception
    (error,) = [e for e in texts(at.error) if e.startswith("Import failed")]
    assert "missing.csv" in error and "does not exist" in error
    assert not (tmp_path / "data").exists()  # the default output (the data root) was not created


def test_runs_table_matches_run_files(open_page, data_root, finished_runs):
    runs_dir = next(iter(finished_runs.values())).parent
    at = open_page("home.py", data_root, runs_dir).run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "status" in df.value.columns).set_index("run")
    assert len(table) == len(finished_runs)
    for size, run_dir in finished_runs.items():
        row = table.loc[run_dir.name]
        test = json.loads((run_dir / "test_metrics.json").read_text())
        rows = runs.read_metrics(run_dir)
        assert row["status"] == "finished" and row["size (px)"] == size and row["model"] == "res-cnn"
        assert row["epochs"] == "2/2"
        assert row["test AUC (medmnist)"] == pytest.approx(test["auc"])
        assert row["test ACC (medmnist, 0.5)"] == pytest.approx(test["acc"])
        assert row["max val AUC (medmnist)"] == pytest.approx(max(r["val_auc"] for r in rows))
        assert row["data"].startswith("NOT ChestMNIST")
    # Key columns first with short headers; no error column (messages go below the table).
    df = next(df for df in at.dataframe if "status" in df.value.columns)
    config = json.loads(df.proto.columns)
    assert list(df.value.columns) == ["run", "status", "size (px)", "model", "epochs", "max val AUC (medmnist)",
                                      "test AUC (medmnist)", "test ACC (medmnist, 0.5)", "data"]
    assert [config[c]["label"] for c in ("max val AUC (medmnist)", "test AUC (medmnist)",
                                         "test ACC (medmnist, 0.5)")] == ["max val AUC", "test AUC", "test ACC"]
    assert config["run"]["pinned"]


def test_run_errors_are_listed_below_the_table(open_page, data_root, runs_copy):
    failed, stopped = runs_copy[28], runs_copy[64]
    runs.set_status(failed, "failed", error="RuntimeError: out of memory")
    runs.set_status(stopped, "stopped", error="Stopped by request; resume to continue.")
    at = open_page("home.py", data_root, failed.parent).run()
    assert not at.exception
    (messages,) = [e for e in at.expander if e.label.startswith("Messages of 2 run(s)")]
    assert "(1 failed)" in messages.label
    assert [e.value for e in messages.error] == [f"**{failed.name}** (failed): RuntimeError: out of memory"]
    assert any(stopped.name in c.value and "Stopped by request" in c.value for c in messages.caption)


def test_delete_run_with_confirmation(open_page, data_root, runs_copy):
    victim, keeper = runs_copy[28], runs_copy[64]
    at = open_page("home.py", data_root, victim.parent).run()
    at.selectbox(key="delete_choice").select(victim.name)
    at.button(key="delete_ask").click().run()
    assert victim.is_dir()  # asking is not deleting
    assert any(victim.name in w for w in texts(at.warning))
    at.button(key="delete_yes").click().run()
    assert not at.exception
    assert not victim.exists() and keeper.is_dir()
    assert any(f"Deleted run {victim.name}" in s for s in texts(at.success))
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert list(table["run"]) == [keeper.name]


def test_cancel_keeps_the_run_and_running_runs_cannot_be_deleted(open_page, data_root, runs_copy):
    running, other = runs_copy[28], runs_copy[64]
    runs.set_status(running, "running")  # this test process: alive, so the run reads as running
    at = open_page("home.py", data_root, running.parent).run()
    assert at.selectbox(key="delete_choice").options == [other.name + " (finished)"]
    at.button(key="delete_ask").click().run()
    at.button(key="delete_no").click().run()
    assert other.is_dir() and running.is_dir()
    assert not at.warning
    assert runs.read_status(running)["pid"] == os.getpid()


def test_app_navigation_reaches_the_pages(open_page, data_root, finished_runs):
    """Through app.py (st.navigation, sidebar): each page renders and Train links to Compare for real."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["data_root"] = str(data_root)
    at.session_state["runs_dir"] = str(finished_runs[28].parent)
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Data & runs"]
    assert at.sidebar.text_input(key="data_root").value == str(data_root)
    at.switch_page("pages/train.py").run()
    assert not at.exception and [t.value for t in at.title] == ["Train"]
    assert [link.proto.label for link in at.get("page_link")] == ["Compare runs"]
    at.switch_page("pages/compare.py").run()
    assert not at.exception and [t.value for t in at.title] == ["Compare runs"]


@pytest.mark.parametrize("page, title", [("pages/thresholds.py", "Thresholds"), ("pages/compare.py", "Compare runs")])
def test_first_request_to_a_page_url_still_runs_app_py(data_root, finished_runs, page, title):
    """A fresh server's first request for /thresholds: Streamlit's legacy pages/ mode would run the page
    without app.py (no sidebar settings, every file in pages/ listed). AppTest starts each run in that
    mode (as a new server process does), and a page named before the first run is opened by URL path."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["data_root"] = str(data_root)
    at.session_state["runs_dir"] = str(finished_runs[28].parent)
    at.switch_page(page).run()
    assert not at.exception and [t.value for t in at.title] == [title]
    # app.py ran: its sidebar settings are there, and its navigation (not the pages/ folder) is in charge.
    assert [t.key for t in at.sidebar.text_input] == ["data_root", "runs_dir"]
    from streamlit.runtime.pages_manager import PagesManager

    assert PagesManager.uses_pages_directory is False


def test_cached_data_is_reloaded_when_the_file_is_replaced(tmp_path):
    """The cache key includes the npz's mtime, so an import or download is seen at once."""
    import os

    from ui.common import load_data
    from tests.synthetic import write_planted

    path = write_planted(tmp_path, 28, n=(20, 8, 8))
    assert len(load_data(tmp_path, 28).train) == 20
    write_planted(tmp_path, 28, n=(30, 8, 8))
    os.utime(path, (1, 1))  # a different mtime even on coarse-clock filesystems
    assert len(load_data(tmp_path, 28).train) == 30


@pytest.mark.parametrize("page", ["home.py", "train.py", "compare.py", "thresholds.py", "saliency.py"])
def test_unreadable_runs_folder_is_said_not_raised(open_page, data_root, finished_runs, monkeypatch, page):
    """A runs folder that cannot be listed (permissions, a dead network mount) is an error naming the
    folder and what to do, on every page that lists runs; none of them crashes."""
    where = finished_runs[28].parent

    def denied(runs_dir=None):
        raise PermissionError(13, "Permission denied", str(runs_dir))
    monkeypatch.setattr(runs_folder, "list_runs", denied)
    at = open_page(page, data_root, where).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors == [f"Cannot read the runs folder {where}: Permission denied. Choose another folder in the sidebar."]


# --- through app.py: the sidebar's settings and the demo on a fresh clone ----------------------

def open_app(query: dict[str, str] | None = None):
    """A new browser session on app.py (nothing in session state), not yet run."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at


def test_fresh_clone_offers_the_demo_in_one_click_and_labels_it(tmp_path, monkeypatch):
    """No ChestMNIST anywhere (no ../shared, empty ~/.medmnist): one click opens the bundled demo,
    which is labelled as not ChestMNIST, and the choice is remembered for the next session."""
    monkeypatch.setenv("CHESTMNIST_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("CHESTMNIST_RUNS", str(tmp_path / "runs"))
    at = open_app().run()
    assert not at.exception and not at.tabs
    assert any("demo data" in e for e in texts(at.error))  # the folder does not exist: the error offers the demo
    assert at.sidebar.button(key="sidebar_use_demo")
    at.button(key="home_use_demo").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.sidebar.text_input(key="data_root").value == D.DEMO_WORD
    assert [t.label for t in at.tabs] == [f"{s} px" for s in D.SIZES]
    n = D.split_counts(D.DEMO_ROOT, 28)
    assert ("train images", f"{n['train']:,}") in {(m.label, m.value) for m in at.metric}
    assert any("not ChestMNIST" in i for i in texts(at.info))
    assert any("not ChestMNIST" in c for c in texts(at.sidebar.caption))
    assert not at.sidebar.button  # no demo offer once the demo is open
    assert at.query_params["data_root"] == D.DEMO_WORD
    assert settings.load() == {"data_root": D.DEMO_WORD}
    at = open_app().run()  # a new tab
    assert not at.exception and at.sidebar.text_input(key="data_root").value == D.DEMO_WORD
    at.button(key="home_leave_demo").click().run()
    assert at.sidebar.text_input(key="data_root").value == str(tmp_path / "empty")
    assert "data_root" not in at.query_params and settings.load()["data_root"] == str(tmp_path / "empty")


def test_sidebar_settings_survive_a_new_session(data_root, tmp_path):
    at = open_app().run()
    assert at.sidebar.text_input(key="data_root").value == str(D.default_root())
    at.sidebar.text_input(key="data_root").input(str(data_root)).run()
    at.sidebar.text_input(key="runs_dir").input(str(tmp_path / "runs")).run()
    assert not at.exception and [t.label for t in at.tabs] == ["28 px", "64 px"]
    assert at.query_params["data_root"] == str(data_root)
    at = open_app().run()  # a reload without the URL, a new tab, a restart
    assert not at.exception
    assert at.sidebar.text_input(key="data_root").value == str(data_root)
    assert at.sidebar.text_input(key="runs_dir").value == str(tmp_path / "runs")
    assert [t.label for t in at.tabs] == ["28 px", "64 px"]


def test_the_url_wins_over_the_saved_settings(data_root, tmp_path):
    settings.save({"data_root": str(tmp_path / "elsewhere"), "runs_dir": str(tmp_path / "saved-runs")})
    at = open_app({"data_root": str(data_root)}).run()
    assert not at.exception
    assert at.sidebar.text_input(key="data_root").value == str(data_root)
    assert at.sidebar.text_input(key="runs_dir").value == str(tmp_path / "saved-runs")
    assert [t.label for t in at.tabs] == ["28 px", "64 px"]
    assert settings.load()["data_root"] == str(tmp_path / "elsewhere")  # opening a link changes no saved choice


def test_a_damaged_settings_file_is_said_and_the_defaults_used(tmp_path):
    settings.settings_path().write_text("{oops")
    at = open_app().run()
    assert not at.exception
    (warning,) = texts(at.sidebar.warning)
    assert str(settings.settings_path()) in warning
    assert at.sidebar.text_input(key="data_root").value == str(D.default_root())
    at.sidebar.text_input(key="data_root").input(D.DEMO_WORD).run()
    assert settings.load() == {"data_root": D.DEMO_WORD}  # the next change rewrote it
    assert not at.sidebar.warning


def test_navigation_icons_are_material_symbols():
    """Emoji icons render as empty boxes in a browser without an emoji font; the tab's icon is a file in the repo
    (a Material Symbol there is fetched from fonts.gstatic.com, which an offline browser logs as an error)."""
    import ast

    from tests.conftest import REPO

    tree = ast.parse((REPO / "app.py").read_text())
    icons = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
             for kw in node.keywords if kw.arg == "icon"]
    pages = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page")
    assert len(icons) == pages and all(i.startswith(":material/") and i.endswith(":") for i in icons), icons
    import app
    assert app.ICON.is_file() and app.ICON.is_relative_to(REPO) and app.ICON.suffix == ".png"
    at = open_app().run()
    assert not at.exception


def test_the_warm_up_imports_only_once_no_page_has_run_for_a_moment(tmp_path, monkeypatch):
    """Imports hold the GIL, so app.py's warm-up must not run beside a page: it waits for a quiet moment."""
    from ui import warmup

    (tmp_path / "warm_probe_module.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(warmup, "QUIET_S", 0.3)
    monkeypatch.delitem(sys.modules, "warm_probe_module", raising=False)
    thread = threading.Thread(target=warmup._import_when_quiet, args=("warm_probe_module",), daemon=True)
    with warmup.page_run():
        thread.start()
        time.sleep(0.6)  # longer than QUIET_S: only the running page holds the import back
        assert "warm_probe_module" not in sys.modules
    ended = time.monotonic()
    thread.join(timeout=10)
    assert "warm_probe_module" in sys.modules and time.monotonic() - ended >= 0.3


def test_the_warm_up_starts_once_per_server_and_can_be_waited_for(monkeypatch):
    """app.py calls warm_up after every page run: only the first call may start a thread."""
    from ui import warmup

    calls = []
    monkeypatch.setattr(warmup, "_warm_up", [])
    monkeypatch.setattr(warmup, "_import_when_quiet", lambda module: (time.sleep(0.2), calls.append(module)))
    first = warmup.warm_up()
    assert warmup.warm_up() is first and warmup.warm_up() is first
    warmup.wait_for_warm_up()
    assert not first.is_alive() and calls == ["core.study.runner"]
    assert warmup.warm_up() is first and calls == ["core.study.runner"]  # a finished warm-up is not restarted
