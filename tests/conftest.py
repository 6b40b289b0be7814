"""Shared fixtures: generated planted-pattern data, the bundled real demo set and real (tiny) finished runs.

Generators live in tests/synthetic.py; fixtures here are session-scoped so a run trained once
serves every test that only reads it.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import pytest

from tests.synthetic import write_planted


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the user's ~/.medmnist or saved app settings, or writes into checkpoints/,
    ~/.cache or ~/.config by accident; each starts with no settings file."""
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # The fixed precision/layout rule instead of timing candidates: tests/test_autotune.py measures.
    monkeypatch.setenv("CHESTMNIST_AUTOTUNE", "off")
    monkeypatch.setenv("CHESTMNIST_SETTINGS", str(tmp_path_factory.mktemp("settings") / "settings.json"))
    monkeypatch.delenv("CHESTMNIST_ROOT", raising=False)
    monkeypatch.delenv("CHESTMNIST_RUNS", raising=False)


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist each worker is one of n processes on n cores: torch's default of one intra-op thread per core
    (and a trainer subprocess's, via OMP_NUM_THREADS) oversubscribed the cores n times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    # xdist (`--dist loadfile`) hands out the files with the most tests first unless told not to (its
    # --no-loadscope-reorder, set here rather than in pytest.ini so pytest without xdist still starts): then
    # the files go in collection order, which pytest_collection_modifyitems sets.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser files first, the rest in file order: under `-n 2 --dist loadfile` each worker then starts on
    one of the two longest files, and short files even out the end. Handed out most tests first, the two
    (few tests each) came last, one after the other on one worker: 391 s of tests on it against 331 s."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    isolate(monkeypatch, tmp_path_factory)


@pytest.fixture
def fake_download(monkeypatch):
    """fake_download(body): urllib.request.urlopen answers with `body` (its Content-Length set), so a download
    runs offline; only the network is stood in for."""
    import io
    import urllib.request

    def serve(body: bytes) -> None:
        class Response(io.BytesIO):
            headers = {"Content-Length": str(len(body))}

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False
        monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response(body))
    return serve


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with planted-pattern npz files at 28 and 64 px (256/96/96 images)."""
    root = tmp_path_factory.mktemp("data")
    for size in (28, 64):
        write_planted(root, size)
    return root


@pytest.fixture(scope="session")
def finished_runs(data_root, tmp_path_factory) -> dict[int, Path]:
    """One finished 2-epoch res-cnn run per size on the planted data: {size: run_dir}."""
    from core.train import TrainConfig, prepare_run, train

    runs_dir = tmp_path_factory.mktemp("runs")
    out = {}
    with pytest.MonkeyPatch.context() as mp:  # set up before any test's own _isolated_env
        isolate(mp, tmp_path_factory)
        for size in (28, 64):
            cfg = TrainConfig(size=size, epochs=2, batch_size=64, data_root=str(data_root), runs_dir=str(runs_dir),
                              device="cpu", name="fixture")
            run_dir = prepare_run(cfg)
            assert train(run_dir) == "finished"
            out[size] = run_dir
    return out


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """The bundled demo set (667 real NIH radiographs at every size, NOT ChestMNIST): in every clone."""
    from core.data.chestmnist import DEMO_ROOT

    return DEMO_ROOT


# --- Streamlit page tests (tests/test_app_*.py) ---------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _one_component_scan():
    """Each AppTest scans every installed package's metadata for Streamlit components before its first
    run: about half a second on a small machine, more than most page runs here. The installed packages
    do not change during a test session, so the first scan's answer serves every AppTest."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # a Streamlit without component manifests: nothing is scanned
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_scanner, "scan_component_manifests", functools.cache(manifest_scanner.scan_component_manifests))
        yield


@pytest.fixture
def open_page():
    """open_page("home.py", data_root, runs_dir) -> an AppTest of that page, not yet run.

    Pages run on their own (app.py's navigation also lists pages owned by others), so the sidebar
    that sets the data root and runs folder does not run: they go into session state instead.
    """
    from streamlit.testing.v1 import AppTest

    def _open(page: str, data_root: Path, runs_dir: Path, timeout: float = 60) -> AppTest:
        at = AppTest.from_file(str(REPO / "pages" / page), default_timeout=timeout)
        at.session_state["data_root"] = str(data_root)
        at.session_state["runs_dir"] = str(runs_dir)
        return at
    yield _open
    # A speed measurement the Train page started in the background ends with its test, under that test's
    # stand-ins: left running it takes the CPU from later tests, or still runs torch as the interpreter exits.
    for thread in threading.enumerate():
        if thread.name.startswith("speed-"):
            thread.join(120)


@pytest.fixture
def runs_copy(finished_runs, tmp_path) -> dict[int, Path]:
    """A private copy of `finished_runs` in tmp_path/runs, for tests that change or delete runs."""
    import shutil

    out = {}
    for size, run_dir in finished_runs.items():
        out[size] = tmp_path / "runs" / run_dir.name
        shutil.copytree(run_dir, out[size])
    return out
