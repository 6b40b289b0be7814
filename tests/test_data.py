"""core.data: loading, validation messages, on-disk row reading, batches, pos_weight."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.data import batching
from core.data import chestmnist as D
from core.data import npz
from tests.synthetic import write_planted


def test_load_reads_medmnist_layout(data_root):
    d = D.load(data_root, 28)
    assert (len(d.train), len(d.val), len(d.test)) == (256, 96, 96)
    assert d.train.images.dtype == np.uint8 and d.train.images.shape == (256, 28, 28)
    assert d.test.labels.shape == (96, 14) and set(np.unique(d.test.labels)) <= {0, 1}
    assert D.available_sizes(data_root) == [28, 64]


def test_large_sizes_are_read_by_row_from_an_npy_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    write_planted(tmp_path / "root", 128, n=(8, 4, 4))
    d = D.load(tmp_path / "root", 128)
    assert isinstance(d.train.images, npz.NpyRows) and d.train.images.shape == (8, 128, 128)
    with np.load(D.npz_path(tmp_path / "root", 128)) as z:
        assert np.array_equal(np.asarray(d.train.images), z["train_images"])
        assert np.array_equal(d.test.images[[0, 2, 3]], z["test_images"][[0, 2, 3]])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3
    assert not list((tmp_path / "root").glob("*npy*")), "the cache must stay out of the data root"
    # the same folder loaded into RAM gives the same batches
    x_disk, _ = next(batching.batches(d.train.images, d.train.labels, np.arange(8), 8))
    ram = D.load(tmp_path / "root", 128, on_disk=False)
    assert isinstance(ram.train.images, np.ndarray)
    assert torch.equal(x_disk, next(batching.batches(ram.train.images, ram.train.labels, np.arange(8), 8))[0])


@pytest.mark.parametrize("key", [0, -1, 7, slice(None), slice(3, 40), slice(30, 2, -4), [5, 1, 1, 30],
                                 np.array([], dtype=int), np.array([0, 1, 2, 9, 10, 38, 39]), np.arange(40) % 3 == 0])
def test_npy_rows_index_like_the_array(tmp_path, key):
    a = np.random.default_rng(1).integers(0, 256, (40, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    rows = npz.NpyRows(tmp_path / "a.npy")
    got = rows[key]
    assert got.dtype == a.dtype and np.array_equal(got, a[key])
    assert (len(rows), rows.shape, rows.ndim) == (40, (40, 6, 5), 3)


def test_npy_rows_drop_a_channel_axis_of_one_and_reject_bad_keys(tmp_path):
    a = np.random.default_rng(2).integers(0, 256, (9, 4, 4, 1), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    rows = npz.NpyRows(tmp_path / "a.npy")
    assert rows.shape == (9, 4, 4) and np.array_equal(rows[2:5], a[2:5, ..., 0])
    for bad in (9, -10, np.array([3, 9]), 1.5, np.ones((2, 2), int), np.ones(4, bool)):
        with pytest.raises(IndexError):
            rows[bad]


def test_truncated_npy_cache_is_rebuilt_and_a_bad_npy_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    write_planted(tmp_path / "root", 128, n=(8, 4, 4))
    first = np.asarray(D.load(tmp_path / "root", 128).train.images)
    cached = next((tmp_path / "cache").rglob("train_images*.npy"))
    with open(cached, "r+b") as f:
        f.truncate(cached.stat().st_size - 100)
    with pytest.raises(D.DataError, match="truncated or corrupt") as e:
        npz.NpyRows(cached)
    assert str(cached) in str(e.value) and "Delete it" in str(e.value)
    assert np.array_equal(np.asarray(D.load(tmp_path / "root", 128).train.images), first)  # rebuilt from the npz


def _replace_member(npz: Path, key: str, data: bytes) -> None:
    with zipfile.ZipFile(npz) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members[f"{key}.npy"] = data
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as z:
        for name, b in members.items():
            z.writestr(name, b)


@pytest.mark.parametrize("key", ["train_images", "test_labels"])
def test_an_npz_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path, key):
    path = write_planted(tmp_path, 28, n=(8, 4, 4))
    header = io.BytesIO()
    shape = (10**9, 28, 28) if key.endswith("images") else (10**11, 14)
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    _replace_member(path, key, header.getvalue() + bytes(1000))  # 784 GB / 1.4 TB declared, 1000 bytes held
    for call in (lambda: D.load(tmp_path, 28), lambda: D.split_counts(tmp_path, 28),
                 lambda: D.load(tmp_path, 28, on_disk=True)):
        with pytest.raises(D.DataError) as e:
            call()
        assert f"its {key} array declares shape {shape}" in str(e.value) and "holds 1,000 bytes" in str(e.value)


def test_arrays_larger_than_available_memory_are_refused_with_the_sizes(tmp_path, monkeypatch):
    # A real npz whose arrays (6.3 MB of images and labels) need more than the memory this test says is free.
    write_planted(tmp_path, 64, n=(1000, 300, 300))
    monkeypatch.setattr(npz, "_available_memory", lambda: 2 * 2**20)
    with pytest.raises(D.DataError, match=r"needs 6\.3 MB of memory for its arrays, but only 2\.0 MB is available"):
        D.load(tmp_path, 64)
    assert D.split_counts(tmp_path, 64)["train"] == 1000  # labels alone (22 KB) still fit
    assert npz._available_memory() is None or npz._available_memory() > 0


def test_missing_size_names_file_folder_and_record(data_root):
    with pytest.raises(D.DataError) as e:
        D.load(data_root, 224)
    msg = str(e.value)
    assert "chestmnist_224.npz" in msg and str(data_root.resolve()) in msg and "zenodo.org/records/10519652" in msg
    assert "MB" in msg and "sizes [28, 64]" in msg


@pytest.mark.parametrize("size", [27, 100, 0])
def test_bad_size(size, data_root):
    with pytest.raises(D.DataError, match="not a ChestMNIST size"):
        D.load(data_root, size)


def test_pos_weight_is_neg_over_pos_clipped():
    labels = np.zeros((100, 14), dtype=np.uint8)
    labels[:50, 0] = 1  # 50/50 -> 1
    labels[:5, 1] = 1  # 95/5 = 19 -> clipped to 10
    labels[:20, 2] = 1  # 80/20 = 4
    w = batching.pos_weight(labels, clip=10)
    assert w[0] == pytest.approx(1.0) and w[1] == pytest.approx(10.0) and w[2] == pytest.approx(4.0)
    assert w[3] == pytest.approx(10.0)  # no positives: the clip value, never inf
    assert batching.pos_weight(labels, clip=0) is None
    assert batching.pos_weight(labels, clip=30)[1] == pytest.approx(19.0)


def test_batches_normalise_and_cover_indices_once():
    images = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    images[0] = 0
    images[1] = 255
    labels = np.eye(14, dtype=np.uint8)[:10]
    gen = torch.Generator().manual_seed(0)
    seen = []
    for x, y in batching.batches(images, labels, np.arange(10), 4, shuffle=True, generator=gen):
        assert x.shape[1:] == (1, 4, 4) and x.dtype == torch.float32
        seen += y.argmax(1).tolist()
        assert x.min() >= -1 and x.max() <= 1
    assert sorted(seen) == list(range(10))
    first = batching.to_tensor(images[:2])
    assert first[0].max() == -1 and first[1].min() == 1


def test_augment_keeps_shape_and_moves_pixels_without_flipping():
    x = torch.zeros(8, 1, 32, 32)
    x[:, :, 8:12, 4:8] = 1  # a mark on the left
    gen = torch.Generator().manual_seed(0)
    y = batching.augment(x, gen)
    assert y.shape == x.shape and not torch.equal(x, y)
    # Still on the left half: small shifts/rotations, never a horizontal flip.
    assert (y[..., :16].sum() > 5 * y[..., 16:].sum())


def test_subset_indices_seeded_sorted_and_bounded():
    a, b = D.subset_indices(1000, 100, seed=1), D.subset_indices(1000, 100, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, D.subset_indices(1000, 100, seed=2))
    assert len(D.subset_indices(50, None, 0)) == 50


def test_split_counts_read_labels_only(data_root, tmp_path, monkeypatch):
    assert D.split_counts(data_root, 28) == {s: len(D.load(data_root, 28).split(s)) for s in D.SPLITS}
    # At 128 px load() unpacks images to the cache; counting them reads labels only.
    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    D.write_npz(tmp_path, 128, {s: (rng.integers(0, 256, (n, 128, 128), dtype=np.uint8),
                                    rng.integers(0, 2, (n, D.N_CLASSES), dtype=np.uint8))
                                for s, n in zip(D.SPLITS, (5, 3, 4))})
    assert D.split_counts(tmp_path, 128) == {"train": 5, "val": 3, "test": 4}
    assert not (tmp_path / "cache").exists()
    D.load(tmp_path, 128)
    assert (tmp_path / "cache").is_dir()
    with pytest.raises(D.DataError, match="No 224 px data"):
        D.split_counts(data_root, 224)
    (tmp_path / "chestmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(D.DataError, match="could not be read"):
        D.split_counts(tmp_path, 28)


def test_download_offline_gives_placement_instructions(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(D.DataError) as e:
        D.download(tmp_path, 64)
    assert "chestmnist_64.npz" in str(e.value) and str(tmp_path.resolve()) in str(e.value)
    assert not list(tmp_path.iterdir()), "a failed download leaves no partial file"


def test_download_checks_md5(tmp_path, monkeypatch, fake_download):
    fake_download(b"12345")
    progress = []
    with pytest.raises(D.DataError, match="MD5"):
        D.download(tmp_path, 28, lambda done, total: progress.append((done, total)))
    assert progress == [(5, 5)] and not list(tmp_path.iterdir())


def test_bundled_demo_matches_its_label_table_at_every_size(demo_root):
    """demo/ holds the same radiographs at every size, with the labels and patient-disjoint split
    of its NIH label table (rows in file order per split)."""
    table = pd.read_csv(demo_root / "Data_Entry_nih667.csv")
    nih = {name.lower(): c for c, name in enumerate(D.CLASS_NAMES)} | {"pleural_thickening": D.CLASS_NAMES.index("pleural")}

    def encode(findings: str) -> np.ndarray:
        row = np.zeros(D.N_CLASSES, np.uint8)
        row[[nih[f.lower()] for f in findings.split("|") if f.lower() in nih]] = 1
        return row
    assert D.available_sizes(demo_root) == list(D.SIZES)
    for size in D.SIZES:
        d = D.load(demo_root, size)
        for s in D.SPLITS:
            rows = table[table["Split"] == s]
            assert d.split(s).images.shape == (len(rows), size, size)
            np.testing.assert_array_equal(d.split(s).labels, np.stack([encode(f) for f in rows["Finding Labels"]]))
    patients = [set(table.loc[table["Split"] == s, "Patient ID"]) for s in D.SPLITS]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert D.load(demo_root, 28).val.labels[:, 13].sum() == 0  # hernia: no positives in val (see demo/README.md)
