"""Hostile but ordinary input to the data layer, made real where the machine allows it.

- A full disk is a real tmpfs of 64 KB (mounting one needs root; the tests skip saying so otherwise).
- Permission denied is real: as root, the command runs under `setpriv` without the capabilities
  (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) that let root ignore file modes; as another user, as is.
- FIFOs, /dev/zero and /proc are the real things, driven through the CLI in a subprocess with a
  timeout, since the failure being guarded against is a hang.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.data import chestmnist as D
from core.data import npz
from core.files import DiskFullError, atomic_write
from core.data.importer import DataImportError, import_folder, main
from tests.synthetic import write_planted

REPO = Path(__file__).resolve().parents[1]
NO_DAC = "-dac_override,-dac_read_search"


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                          text=True) if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        pytest.skip("a full disk is simulated with a 64 KB tmpfs, and mounting one is not permitted here "
                    f"({done.stderr.strip() if done else 'no mount command'})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture(scope="session")
def unprivileged(tmp_path_factory) -> list[str]:
    """Command prefix under which file permission bits apply to this process's children."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root, which ignores file modes, and setpriv (util-linux) is missing")
        prefix = ["setpriv", f"--bounding-set={NO_DAC}", f"--inh-caps={NO_DAC}"]
    probe = tmp_path_factory.mktemp("probe") / "secret"
    probe.write_text("x")
    probe.chmod(0)
    if subprocess.run([*prefix, "cat", str(probe)], capture_output=True).returncode == 0:
        pytest.skip("file modes are not enforced for this process even without CAP_DAC_OVERRIDE")
    return prefix


def cli(*args: str, prefix: list[str] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "core.data", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def image_folder(root: Path, n: int = 9, side: int = 32, noise: bool = False) -> tuple[Path, Path]:
    """`n` PNGs and an NIH-style CSV with a Split column (train/val/test in turn)."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (side, side), dtype=np.uint8) if noise else np.full((side, side), i * 20, np.uint8)
        Image.fromarray(a).save(images / f"{i}.png")
    csv = root / "labels.csv"
    pd.DataFrame({"Image Index": [f"{i}.png" for i in range(n)], "Finding Labels": "No Finding",
                  "Split": [D.SPLITS[i % 3] for i in range(n)]}).to_csv(csv, index=False)
    return images, csv


# --- A full disk -------------------------------------------------------------------------------


def test_atomic_write_on_a_full_disk_says_so_names_the_file_and_keeps_the_old_one(tiny_disk):
    target = tiny_disk / "status.json"
    target.write_bytes(b"old")
    with pytest.raises(DiskFullError) as e:
        atomic_write(target, lambda f: f.write(os.urandom(200_000)))
    assert isinstance(e.value, OSError) and e.value.errno == 28
    assert str(e.value).startswith("Disk full") and str(target) in str(e.value)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tiny_disk.iterdir()) == ["status.json"]
    # torch.save turns the same OSError into "RuntimeError: ... unexpected pos ..."; still a full disk.
    with pytest.raises(DiskFullError, match=f"Disk full .* writing {tiny_disk / 'last.pt'}"):
        atomic_write(tiny_disk / "last.pt", lambda f: torch.save({"w": torch.randn(100_000)}, f))
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["status.json"]


def test_unpacking_images_to_a_full_cache_disk_is_not_called_corrupt(tiny_disk, tmp_path, monkeypatch):
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tiny_disk / "cache"))
    write_planted(tmp_path / "root", 128, n=(8, 4, 4))  # 256 KB of images to unpack, 64 KB of disk
    with pytest.raises(D.DataError) as e:  # refused up front from the declared sizes
        D.load(tmp_path / "root", 128)
    msg = str(e.value)
    assert msg.startswith("Disk full") and str(tiny_disk / "cache") in msg and "CHESTMNIST_CACHE" in msg
    # The disk fills while unpacking (free space unknown beforehand): the same diagnosis, no debris.
    monkeypatch.setattr(npz, "_free_disk", lambda folder: None)
    with pytest.raises(D.DataError) as e:
        D.load(tmp_path / "root", 128)
    msg = str(e.value)
    assert msg.startswith("Disk full") and str(tiny_disk / "cache") in msg and "CHESTMNIST_CACHE" in msg
    assert "corrupt" not in msg and "Delete" not in msg
    assert not [p for p in (tiny_disk / "cache").rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    assert len(D.load(tmp_path / "root", 128).train) == 8  # the npz itself was fine all along


def test_import_to_a_full_disk_says_so_and_writes_nothing(tiny_disk, tmp_path):
    images, csv = image_folder(tmp_path, n=30, side=64, noise=True)  # about 120 KB of npz at 64 px
    with pytest.raises(DataImportError) as e:
        import_folder(images, csv, 64, tiny_disk)
    assert str(e.value).startswith("Disk full") and str(tiny_disk / D.npz_name(64)) in str(e.value)
    assert not list(tiny_disk.iterdir()), "neither the npz, its index nor a temp file may be left"


def test_a_download_that_fills_the_disk_says_so_and_leaves_no_partial_file(tiny_disk, fake_download):
    # Only the network is stood in for; the disk that fills is real.
    fake_download(os.urandom(300_000))
    with pytest.raises(D.DataError) as e:
        D.download(tiny_disk, 28)
    msg = str(e.value)
    assert msg.startswith("Disk full") and str(tiny_disk / "chestmnist.npz.part") in msg and "--data-root" in msg
    assert not list(tiny_disk.iterdir())


# --- Permission denied -------------------------------------------------------------------------


def test_a_data_file_this_user_cannot_read_is_not_called_corrupt(unprivileged, tmp_path):
    path = write_planted(tmp_path, 28, n=(8, 4, 4))
    path.chmod(0)
    done = cli("info", "--data-root", str(tmp_path), prefix=unprivileged)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "permission denied" in done.stderr and f"chmod a+r {path}" in done.stderr
    assert "corrupt" not in done.stderr and "Delete" not in done.stderr


def test_a_cache_folder_this_user_cannot_write_is_named(unprivileged, tmp_path, monkeypatch):
    write_planted(tmp_path / "root", 128, n=(8, 4, 4))
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    monkeypatch.setenv("CHESTMNIST_CACHE", str(cache))
    done = cli("info", "--data-root", str(tmp_path / "root"), prefix=unprivileged)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(cache) in done.stderr and "permission denied" in done.stderr and "CHESTMNIST_CACHE" in done.stderr
    assert "corrupt" not in done.stderr


def test_import_names_unreadable_subfolders_and_images(unprivileged, tmp_path):
    images, csv = image_folder(tmp_path, n=9)
    (images / "locked").mkdir()
    os.replace(images / "8.png", images / "locked" / "8.png")
    (images / "locked").chmod(0)
    (images / "7.png").chmod(0)
    done = cli("import-folder", str(images), str(csv), "--size", "28", "--out", str(tmp_path / "out"),
               prefix=unprivileged)
    assert done.returncode == 0, done.stderr
    assert "7.png (not readable by this user (permission denied)" in done.stdout
    assert "could not be read: locked (Permission denied)" in done.stdout and "chmod -R a+rX" in done.stdout
    assert "8.png (file not found)" in done.stdout


def test_an_unreadable_image_folder_says_so_rather_than_empty(unprivileged, tmp_path):
    images, csv = image_folder(tmp_path)
    images.chmod(0)
    done = cli("import-folder", str(images), str(csv), "--size", "28", "--out", str(tmp_path / "out"),
               prefix=unprivileged)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"The image folder {images} cannot be read (Permission denied)" in done.stderr


def test_an_unreadable_label_csv_says_permission_denied(unprivileged, tmp_path):
    images, csv = image_folder(tmp_path)
    csv.chmod(0)
    done = cli("import-folder", str(images), str(csv), "--size", "28", "--out", str(tmp_path / "out"),
               prefix=unprivileged)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot be read by this user (permission denied)" in done.stderr


# --- Things that are not files -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "200 MB file", "folder"])
def test_a_label_csv_that_is_not_a_small_regular_file_is_refused_without_reading(tmp_path, capsys, kind):
    images, _ = image_folder(tmp_path)
    csv = tmp_path / "labels_in"
    if kind == "fifo":
        os.mkfifo(csv)  # nobody ever writes to it: reading it would wait forever
    elif kind == "200 MB file":
        with open(csv, "wb") as f:
            f.truncate(200 * 2**20)  # sparse: no disk used
    elif kind == "folder":
        csv.mkdir()
    else:
        csv = Path(kind)
    args = [str(images), str(csv), "--size", "28", "--out", str(tmp_path / "out")]
    if kind in ("fifo", "/dev/zero"):  # in a subprocess: reading these once hung or ate all memory
        done = cli("import-folder", *args, timeout=60)
        rc, err = done.returncode, done.stderr
    else:
        rc, err = main(args), capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    expected = {"fifo": "is not a regular file", "/dev/zero": "is not a regular file",
                "200 MB file": "is larger than the 128 MB", "folder": "is a folder"}[kind]
    assert f"The label CSV {csv} {expected}" in err


def test_proc_as_the_image_folder_is_a_clear_error(tmp_path, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    _, csv = image_folder(tmp_path)
    assert main(["/proc", str(csv), "--size", "28", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and "under /proc" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
