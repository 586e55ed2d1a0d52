"""Omniglot loader: counts on the real archives, preprocessing against Pillow directly, rotations, layouts, errors."""

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convtheory.fewshot.omniglot import (
    OmniglotDataError,
    OmniglotDataset,
    clear_memory_cache,
    load_omniglot,
    resize_ink,
)
from convtheory.types import InvalidArgumentError

DATA = Path(__file__).resolve().parents[2] / "data" / "omniglot"
SMALL1 = DATA / "images_background_small1.zip"
SMALL2 = DATA / "images_background_small2.zip"


@pytest.fixture(scope="module")
def small1():
    return load_omniglot(SMALL1)


@pytest.fixture(scope="module")
def small2():
    return load_omniglot(SMALL2)


@pytest.fixture(scope="module")
def both():
    return load_omniglot(DATA)


def png_bytes(array01: np.ndarray) -> bytes:
    """A one-bit PNG: array 1 = white background, 0 = black stroke (the Omniglot convention)."""
    buf = io.BytesIO()
    Image.fromarray((array01 * 255).astype(np.uint8)).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def glyph(k: int, side: int = 105) -> np.ndarray:
    img = np.ones((side, side))
    img[10 + k: 30 + k, 20:25 + k] = 0
    return img


def write_archive(path: Path, top: str | None = "images_background", alphabets=("A", "B"), chars=3, drawings=4):
    with zipfile.ZipFile(path, "w") as zf:
        for a in alphabets:
            for c in range(1, chars + 1):
                for d in range(1, drawings + 1):
                    rel = f"{a}/character{c:02d}/{c:02d}{d:02d}_{d:02d}.png"
                    zf.writestr(f"{top}/{rel}" if top else rel, png_bytes(glyph(c + d)))
    return path


# ----------------------------------------------------------------------------------------------- real data
def test_real_archives_hold_136_and_156_characters_of_20_drawings(small1, small2):
    assert small1.num_classes == 136 and small2.num_classes == 156
    assert torch.all(small1.counts == 20) and torch.all(small2.counts == 20)
    assert len(small1) == 136 * 20 and len(small2) == 156 * 20
    assert small1.alphabets == ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
    assert small2.alphabets == ("Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog")


def test_both_archives_deduplicate_to_242_characters_from_8_alphabets(both, small1, small2):
    assert both.num_classes == 242 and len(both.alphabets) == 8 and len(both) == 242 * 20
    assert set(both.classes) == set(small1.classes) | set(small2.classes)
    assert len(set(both.classes)) == 242
    shared = set(small1.classes) & set(small2.classes)
    assert {a for a, _ in shared} == {"Greek", "Latin"} and len(shared) == 136 + 156 - 242
    # The order in which sources are named does not change the result.
    swapped = load_omniglot([SMALL2, SMALL1])
    assert swapped.classes == both.classes and torch.equal(swapped.images, both.images)


def test_preprocessing_matches_pillow_invert_then_lanczos(small1):
    x = small1.images
    assert x.shape == (2720, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(x.mean()) < 0.2  # strokes are the minority: background 0, ink 1
    with zipfile.ZipFile(SMALL1) as zf:
        folder = "images_background_small1/Korean/character03/"
        name = sorted(n for n in zf.namelist() if n.startswith(folder) and n.endswith(".png"))[1]
        raw = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L"))
    inverted = Image.fromarray((255 - raw).astype(np.uint8))
    expected = np.asarray(inverted.resize((28, 28), Image.Resampling.LANCZOS)).astype(np.float32) / 255
    c = small1.classes.index(("Korean", "character03"))
    got = x[small1.labels == c][1].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_full_resolution_keeps_the_binary_strokes_exactly():
    ds = load_omniglot(SMALL1, size=105, dtype=torch.uint8)
    with zipfile.ZipFile(SMALL1) as zf:
        name = sorted(n for n in zf.namelist() if n.endswith(".png"))[0]
        raw = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L"))
    assert ds.images.dtype == torch.uint8 and set(torch.unique(ds.images).tolist()) == {0, 255}
    assert torch.equal(ds.images[0], torch.from_numpy(np.where(raw == 0, 255, 0).astype(np.uint8)))


def test_size_and_box_resample_options():
    box = load_omniglot(SMALL1, size=15, resample="box")
    assert box.images.shape == (2720, 15, 15)
    assert 0.0 <= float(box.images.min()) and float(box.images.max()) <= 1.0
    # 105 = 7 * 15: BOX is then the mean over 7x7 blocks, up to Pillow's rounding to 1/255 (two 1-D passes).
    full = load_omniglot(SMALL1, size=105)
    blocks = full.images.reshape(-1, 15, 7, 15, 7).mean(dim=(2, 4))
    assert torch.allclose(box.images, blocks, atol=1.01 / 255, rtol=0)
    lanczos = load_omniglot(SMALL1, size=15)
    assert not torch.equal(lanczos.images, box.images)


def test_rotations_quadruple_the_classes(both):
    rot = load_omniglot(DATA, rotations=True)
    assert rot.num_classes == 4 * 242 and len(rot) == 4 * len(both)
    assert rot.rotations[:4] == (0, 90, 180, 270) and rot.classes[:4] == (both.classes[0],) * 4
    for c in (0, 117, 241):
        base = both.images[both.labels == c]
        for r in range(4):
            assert torch.equal(rot.images[rot.labels == 4 * c + r], torch.rot90(base, r, dims=(1, 2)))


def test_class_index_and_subset_agree_with_labels(both):
    index, counts = both.class_index()
    assert index.shape == (242, 20) and torch.all(counts == 20)
    assert torch.equal(both.labels[index], torch.arange(242)[:, None].expand(242, 20))
    sub = both.subset([5, 2])
    assert sub.num_classes == 2 and sub.classes == (both.classes[5], both.classes[2])
    assert torch.equal(sub.images[sub.labels == 0], both.images[both.labels == 5])
    with pytest.raises(InvalidArgumentError, match="distinct"):
        both.subset([1, 1])


# ----------------------------------------------------------------------------------- layouts and the cache
def test_unzipped_folders_with_or_without_top_folder_read_like_the_zip(tmp_path, small1):
    with zipfile.ZipFile(SMALL1) as zf:
        zf.extractall(tmp_path / "with_top")
    with_top = load_omniglot(tmp_path / "with_top")
    inner = load_omniglot(tmp_path / "with_top" / "images_background_small1")
    for ds in (with_top, inner):
        assert ds.classes == small1.classes and torch.equal(ds.images, small1.images)


def test_generated_archive_and_folder_without_top_folder(tmp_path):
    a = load_omniglot(write_archive(tmp_path / "images_evaluation.zip", top=None))
    b = load_omniglot(write_archive(tmp_path / "x.zip", top="images_evaluation"))
    assert a.num_classes == 6 and torch.all(a.counts == 4)
    assert a.classes == b.classes and torch.equal(a.images, b.images)


def test_no_file_is_written_without_cache_dir_and_cache_dir_round_trips(tmp_path, monkeypatch):
    src = write_archive(tmp_path / "images_background.zip")
    monkeypatch.chdir(tmp_path)
    clear_memory_cache()
    first = load_omniglot(src)
    assert sorted(os.listdir(tmp_path)) == ["images_background.zip"]
    cache = tmp_path / "cache"
    load_omniglot(src, cache_dir=cache, size=20)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    clear_memory_cache()
    again = load_omniglot(src, cache_dir=cache, size=20)  # read back from the .npz
    fresh = load_omniglot(src, size=20)
    assert torch.equal(again.images, fresh.images) and again.classes == fresh.classes == first.classes


# -------------------------------------------------------------------------------------------------- errors
def check_error(exc_info, path):
    assert isinstance(exc_info.value, InvalidArgumentError)
    msg = str(exc_info.value)
    assert str(path) in msg and "expected" in msg


def test_missing_path_raises_naming_it(tmp_path):
    with pytest.raises(OmniglotDataError) as e:
        load_omniglot(tmp_path / "nope.zip")
    check_error(e, tmp_path / "nope.zip")


@pytest.mark.parametrize("depth", [1, 2])
def test_folder_in_the_wrong_layout_raises(tmp_path, depth):
    folder = tmp_path / "flat"
    sub = folder / "/".join(["Alphabet"] * (depth - 1)) if depth > 1 else folder
    sub.mkdir(parents=True)
    (sub / "0001_01.png").write_bytes(png_bytes(glyph(1)))
    with pytest.raises(OmniglotDataError) as e:
        load_omniglot(folder)
    check_error(e, folder)


def test_empty_folder_and_runs_folder_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OmniglotDataError) as e:
        load_omniglot(tmp_path / "empty")
    check_error(e, tmp_path / "empty")
    runs = tmp_path / "runs" / "run01" / "training"
    runs.mkdir(parents=True)
    (runs / "class01.png").write_bytes(png_bytes(glyph(1)))
    with pytest.raises(OmniglotDataError, match="one-shot runs"):
        load_omniglot(tmp_path / "runs")


def test_truncated_zip_raises(tmp_path):
    good = write_archive(tmp_path / "good.zip")
    bad = tmp_path / "images_background.zip"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(OmniglotDataError) as e:
        load_omniglot(bad)
    check_error(e, bad)


def test_corrupt_member_raises_naming_the_member(tmp_path):
    bad = tmp_path / "images_background.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("top/A/character01/0001_01.png", png_bytes(glyph(1)))
        zf.writestr("top/A/character01/0001_02.png", b"not a png at all")
    with pytest.raises(OmniglotDataError, match="0001_02.png"):
        load_omniglot(bad)


def test_bad_options_raise():
    with pytest.raises(InvalidArgumentError, match="resample"):
        load_omniglot(SMALL1, resample="bicubic")
    with pytest.raises(InvalidArgumentError, match="size"):
        load_omniglot(SMALL1, size=0)
    with pytest.raises(InvalidArgumentError, match="empty"):
        load_omniglot([])


def test_resize_ink_keeps_shape_and_range():
    ink = np.zeros((3, 105, 105), np.uint8)
    ink[:, 40:60, 40:60] = 255
    out = resize_ink(ink, 28)
    assert out.shape == (3, 28, 28) and out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert isinstance(load_omniglot(SMALL1), OmniglotDataset)
