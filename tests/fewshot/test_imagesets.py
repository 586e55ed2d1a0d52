"""miniImageNet / FC100 / CIFAR-FS loaders on tiny files written here in each distributed form."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from convtheory.fewshot import imagesets as ims
from convtheory.fewshot.episodes import split_classes
from convtheory.fewshot.imagesets import (
    IMAGESETS,
    ImageEpisodeSampler,
    ImageSet,
    ImageSetDataError,
    fixed_image_episodes,
    load_cifar_fs,
    load_fc100,
    load_imageset,
    load_miniimagenet,
)
from convtheory.types import InvalidArgumentError

WNIDS = ("n01532829", "n01558993", "n01704323", "n01749939", "n01770081")
C, K = 5, 6  # classes, images per class
CIFAR_IDS = (3, 17, 42, 58, 99)  # CIFAR-100 class ids as MetaOptNet's pickles keep them (note "17" < "3" as text)


# --------------------------------------------------------------------------------------------- file writers
class Py2Pickler(pickle._Pickler):
    """Writes bytes as python 2 ``str`` opcodes, as MetaOptNet's python 2 pickles hold numpy data: reading them
    back needs ``encoding="latin1"``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else
                   pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj, path):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (every python 2 numpy) named the module numpy.core.multiarray
    path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def interleaved(n_classes=C, k=K):
    """File order of the images: classes interleaved, each class's images in order (image i*? of class c)."""
    return [(c, i) for i in range(k) for c in (3, 0, 4, 1, 2)[:n_classes]]


def write_csv_form(root, split, truth, ext="png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["filename,label"]
    for c, i in interleaved():
        name = f"{WNIDS[c]}{i + 1:08d}.{ext}"
        Image.fromarray(truth[c, i]).save(root / "images" / name)
        lines.append(f"{name},{WNIDS[c]}")
    (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_cache_form(root, split, truth):
    """mini-imagenet-cache-{split}.pkl: images stored in a scrambled order, class_dict pointing into it."""
    order = interleaved()[::-1]
    image_data = np.stack([truth[c, i] for c, i in order])
    class_dict = {WNIDS[c]: [order.index((c, i)) for i in range(K)] for c in (2, 0, 4, 1, 3)}
    with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
        pickle.dump({"image_data": image_data, "class_dict": class_dict}, fh, protocol=4)


def write_array_pickle(path, truth, ids, names=None):
    order = interleaved()
    obj = {"data": np.stack([truth[c, i] for c, i in order]), "labels": [int(ids[c]) for c, _ in order]}
    if names is not None:
        obj["catname2label"] = {names[c]: int(ids[c]) for c in range(C)}
    py2_pickle(obj, path)


def write_folder_form(root, split, truth, names, ext="png"):
    for c, i in interleaved():
        d = root / split / names[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(truth[c, i]).save(d / f"{i:03d}.{ext}")


@pytest.fixture(scope="module")
def mini_truth():
    return np.random.default_rng(0).integers(0, 256, (C, K, 84, 84, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cifar_truth():
    return np.random.default_rng(1).integers(0, 256, (C, K, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory, mini_truth):
    """One miniImageNet folder holding the val split in all four forms."""
    root = tmp_path_factory.mktemp("mini")
    write_csv_form(root, "val", mini_truth)
    write_cache_form(root, "val", mini_truth)
    write_array_pickle(root / "miniImageNet_category_split_val.pickle", mini_truth, [64 + c for c in range(C)],
                       names=WNIDS)
    write_folder_form(root, "val", mini_truth, WNIDS)
    return root


def expected(truth):
    """uint8 (C*K, 3, H, W) grouped by class, each class in file order."""
    return torch.from_numpy(truth.reshape(-1, *truth.shape[2:])).permute(0, 3, 1, 2)


def pixels(ds: ImageSet) -> torch.Tensor:
    return torch.round(ds.unit() * 255).to(torch.uint8)


# -------------------------------------------------------------------------------------------- miniImageNet
def test_csv_form_counts_shapes_labels_and_pixels(mini_root, mini_truth):
    ds = load_miniimagenet(mini_root, "val", form="csv")
    assert (len(ds), ds.num_classes, ds.form, ds.split, ds.name) == (30, 5, "csv", "val", "miniimagenet")
    assert ds.images.shape == (30, 3, 84, 84) and ds.images.dtype == torch.float32
    assert ds.classes == WNIDS
    assert ds.labels.tolist() == [c for c in range(C) for _ in range(K)]
    assert ds.counts.tolist() == [6] * 5
    assert torch.equal(pixels(ds), expected(mini_truth))  # PNG is lossless: every pixel back, in RGB order


@pytest.mark.parametrize("form", ["cache", "category", "folder"])
def test_every_mini_form_loads_the_same_arrays_as_the_csv(mini_root, form):
    ref = load_miniimagenet(mini_root, "val", form="csv")
    ds = load_miniimagenet(mini_root, "val", form=form)
    assert ds.form == form
    assert torch.equal(ds.images, ref.images)
    assert torch.equal(ds.labels, ref.labels)
    assert ds.classes == ref.classes


def test_auto_picks_the_csv_first_and_files_can_be_given_directly(mini_root):
    assert load_miniimagenet(mini_root, "val").form == "csv"
    ref = load_miniimagenet(mini_root, "val", form="csv")
    for name, form in [("mini-imagenet-cache-val.pkl", "cache"), ("miniImageNet_category_split_val.pickle",
                                                                   "category"), ("val.csv", "csv")]:
        ds = load_miniimagenet(mini_root / name, "val")
        assert ds.form == form and torch.equal(ds.images, ref.images)


def test_category_pickle_without_names_labels_classes_by_their_integer(tmp_path, mini_truth):
    write_array_pickle(tmp_path / "miniImageNet_category_split_train_phase_train.pickle", mini_truth,
                       [10, 2, 33, 7, 64])
    ds = load_miniimagenet(tmp_path, "train")
    # classes sorted by integer label; class c of the truth got label ids[c]
    assert ds.classes == ("2", "7", "10", "33", "64")
    order = [1, 3, 0, 2, 4]  # truth class of each sorted label
    assert torch.equal(pixels(ds), expected(mini_truth[order]))


def test_python2_pickles_need_latin1_and_are_read(tmp_path, mini_truth):
    path = tmp_path / "miniImageNet_category_split_test.pickle"
    write_array_pickle(path, mini_truth, list(range(C)))
    with pytest.raises(UnicodeDecodeError):  # the fixture really is a python 2 style pickle
        with open(path, "rb") as fh:
            pickle.load(fh)
    assert len(load_miniimagenet(tmp_path, "test")) == 30


def test_jpegs_of_any_size_and_mode_are_resized_to_rgb(tmp_path):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 40], [128, 128, 128]], dtype=np.uint8)
    (tmp_path / "images").mkdir()
    lines = ["filename,label"]
    for c in range(C):
        for i in range(K):
            name = f"{WNIDS[c]}{i:08d}.jpg"
            img = Image.new("RGB", (100 + 7 * i, 90), tuple(int(v) for v in colours[c]))
            (img.convert("L") if c == 4 else img).save(tmp_path / "images" / name, quality=95)
            lines.append(f"{name},{WNIDS[c]}")
    (tmp_path / "train.csv").write_text("\n".join(lines))
    ds = load_miniimagenet(tmp_path, "train")
    assert ds.images.shape == (30, 3, 84, 84)
    mean_colour = ds.unit().mean(dim=(2, 3)).reshape(C, K, 3) * 255
    assert torch.allclose(mean_colour, torch.from_numpy(colours).float()[:, None, :].expand(C, K, 3), atol=3)
    small = load_miniimagenet(tmp_path, "train", size=20, resample="bilinear", dtype=torch.float64)
    assert small.images.shape == (30, 3, 20, 20) and small.images.dtype == torch.float64


def test_normalisation_uses_the_community_constants(mini_root, mini_truth, cifar_truth, tmp_path):
    ds = load_miniimagenet(mini_root, "val", form="cache")
    mean = np.array([120.39586422, 115.59361427, 104.54012653]) / 255
    std = np.array([70.68188272, 68.27635443, 72.54505529]) / 255
    want = (mini_truth[0, 0, 5, 7] / 255 - mean) / std
    assert np.allclose(ds.images[0, :, 5, 7].numpy(), want, atol=1e-6)
    assert np.allclose(ds.mean, mean) and np.allclose(ds.std, std)
    raw = load_miniimagenet(mini_root, "val", form="cache", normalize=False)
    assert (raw.mean, raw.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert torch.allclose(raw.images, expected(mini_truth).float() / 255)
    write_array_pickle(tmp_path / "FC100_test.pickle", cifar_truth, CIFAR_IDS)
    fc = load_fc100(tmp_path, "test")
    cmean = np.array([129.37731888, 124.10583864, 112.47758569]) / 255
    cstd = np.array([68.20947949, 65.43124043, 70.45866994]) / 255
    assert np.allclose(fc.images[0, :, 1, 2].numpy(), (cifar_truth[0, 0, 1, 2] / 255 - cmean) / cstd, atol=1e-6)


# ---------------------------------------------------------------------------------------- FC100 / CIFAR-FS
@pytest.mark.parametrize("name,prefix", [("fc100", "FC100"), ("cifar-fs", "CIFAR_FS")])
def test_cifar_pickle_and_folder_forms_agree(tmp_path, cifar_truth, name, prefix):
    write_array_pickle(tmp_path / f"{prefix}_train.pickle", cifar_truth, CIFAR_IDS)
    write_folder_form(tmp_path, "train", cifar_truth, [f"c{i:02d}" for i in CIFAR_IDS])
    pk = IMAGESETS[name](tmp_path, "train")
    fo = load_imageset(name, tmp_path, "train", form="folder")
    assert (pk.form, fo.form) == ("pickle", "folder")
    assert pk.images.shape == (30, 3, 32, 32)
    assert pk.classes == ("3", "17", "42", "58", "99")
    assert fo.classes == ("c03", "c17", "c42", "c58", "c99")
    assert torch.equal(pk.images, fo.images) and torch.equal(pk.labels, fo.labels)
    assert torch.equal(pixels(pk), expected(cifar_truth))


def test_cifar_fs_file_given_directly_and_other_splits(tmp_path, cifar_truth):
    for split in ("val", "test"):
        write_array_pickle(tmp_path / f"CIFAR_FS_{split}.pickle", cifar_truth, CIFAR_IDS)
    ds = load_cifar_fs(tmp_path / "CIFAR_FS_test.pickle", "test")
    assert (len(ds), ds.split, ds.form) == (30, "test", "pickle")
    assert len(load_cifar_fs(tmp_path, "val")) == 30


# ----------------------------------------------------------------------------------------------- episodes
def test_episode_sampler_draws_valid_episodes(mini_root):
    ds = load_miniimagenet(mini_root, "val", form="cache")
    n, k, q, B = 3, 2, 4, 8
    sampler = ImageEpisodeSampler(ds, n_way=n, k_shot=k, n_query=q, seed=0)
    idx = sampler.sample_index(B)
    ep = sampler.gather(idx)
    assert ep.support.shape == (B, n * k, 3, 84, 84) and ep.query.shape == (B, n * q, 3, 84, 84)
    assert torch.equal(ep.support, ds.images[idx.support]) and torch.equal(ep.query, ds.images[idx.query])
    assert ep.support_labels[0].tolist() == [0, 0, 1, 1, 2, 2]
    # every image belongs to the class its task label stands for; classes distinct; support and query disjoint
    assert torch.equal(ds.labels[idx.support].reshape(B, n, k), idx.classes[..., None].expand(B, n, k))
    assert torch.equal(ds.labels[idx.query].reshape(B, n, q), idx.classes[..., None].expand(B, n, q))
    for b in range(B):
        assert idx.classes[b].unique().numel() == n
        both = torch.cat([idx.support[b], idx.query[b]])
        assert both.unique().numel() == n * (k + q)
    # seeded: the same tasks again from the same seed
    again = ImageEpisodeSampler(ds, n, k, q, seed=0).sample(B)
    assert torch.equal(again.support, ep.support) and torch.equal(again.classes, ep.classes)


def test_class_splits_subsets_and_fixed_episodes(mini_root):
    ds = load_miniimagenet(mini_root, "val")
    split = split_classes(ds, (3, 1, 1), seed=0)
    assert sorted(torch.cat(split).tolist()) == list(range(5))
    sampler = ImageEpisodeSampler(ds, 3, 1, 5, seed=1, classes=split.train)
    assert set(sampler.sample(16).classes.unique().tolist()) <= set(split.train.tolist())
    fixed = fixed_image_episodes(ds, 5, 1, 5, count=7, seed=2)
    sizes = [e.num_tasks for e in fixed.batches(3)]
    assert sizes == [3, 3, 1] and fixed.all().support.shape == (7, 5, 3, 84, 84)
    assert torch.equal(fixed.all().query, fixed_image_episodes(ds, 5, 1, 5, count=7, seed=2).all().query)
    sub = ds.subset([4, 1])
    # relabelled in the order given, images kept in dataset order (as OmniglotDataset.subset)
    assert sub.classes == (WNIDS[4], WNIDS[1]) and sub.labels.tolist() == [1] * 6 + [0] * 6
    assert torch.equal(sub.images[6:], ds.images[24:30]) and torch.equal(sub.images[:6], ds.images[6:12])
    with pytest.raises(InvalidArgumentError):
        ImageEpisodeSampler(ds, 2, 3, 4)  # 7 images per class needed, 6 held


def test_decoded_csv_is_cached_on_disk(tmp_path, mini_truth, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    write_csv_form(root, "test", mini_truth)
    first = load_miniimagenet(root, "test", cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(ims, "_decode_all", refuse)
    second = load_miniimagenet(root, "test", cache_dir=cache)
    assert torch.equal(first.images, second.images) and second.classes == first.classes
    with pytest.raises(AssertionError):  # a different size is a different cache entry
        load_miniimagenet(root, "test", cache_dir=cache, size=40)


# ------------------------------------------------------------------------------------------------- errors
def raises_data_error(call, *needles):
    with pytest.raises(ImageSetDataError) as info:
        call()
    msg = str(info.value)
    assert isinstance(info.value, InvalidArgumentError) and "expected" in msg and "\n" not in msg
    for needle in needles:
        assert str(needle) in msg, (needle, msg)
    return msg


def test_missing_path_and_wrong_layout(tmp_path):
    raises_data_error(lambda: load_miniimagenet(tmp_path / "nowhere", "train"), tmp_path / "nowhere",
                      "no such file", "train.csv", "mini-imagenet-cache-train.pkl",
                      "miniImageNet_category_split_train_phase_train.pickle")
    (tmp_path / "notes.txt").write_text("x")
    raises_data_error(lambda: load_fc100(tmp_path, "val"), tmp_path, "no val data", "FC100_val.pickle",
                      "val/<class>")
    raises_data_error(lambda: load_cifar_fs(tmp_path / "notes.txt", "val"), "notes.txt", "CIFAR_FS_val.pickle")
    (tmp_path / "train.csv").write_text("filename,label\n")
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train", form="cache"), "in the cache form")
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train"), "train.csv", "no image rows")
    (tmp_path / "train.csv").write_text("name,wnid\na.jpg,n01532829\n")
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train"), "header filename,label")
    (tmp_path / "train.csv").write_text("filename,label\na.jpg,n01532829\n")
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train"), tmp_path / "images", "no such folder")


def test_csv_row_whose_image_is_missing(tmp_path, mini_truth):
    write_csv_form(tmp_path, "train", mini_truth)
    gone = tmp_path / "images" / f"{WNIDS[2]}00000004.png"
    os.remove(gone)
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train"), tmp_path / "train.csv", gone, WNIDS[2],
                      "missing")


def test_truncated_and_foreign_pickles(tmp_path, mini_truth, cifar_truth):
    write_cache_form(tmp_path, "train", mini_truth)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    raises_data_error(lambda: load_miniimagenet(tmp_path, "train"), path, "truncated",
                      "mini-imagenet-cache-train.pkl")
    fc = tmp_path / "FC100_train.pickle"
    write_array_pickle(fc, cifar_truth, CIFAR_IDS)
    fc.write_bytes(fc.read_bytes()[:-100])
    raises_data_error(lambda: load_fc100(tmp_path, "train"), fc, "truncated")
    with open(fc, "wb") as fh:
        pickle.dump({"images": np.zeros((2, 32, 32, 3), np.uint8)}, fh, protocol=2)
    raises_data_error(lambda: load_fc100(tmp_path, "train"), fc, "'data' and 'labels'", "['images']")
    with open(fc, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 32, 32, 3), np.float32), "labels": [0, 1]}, fh, protocol=2)
    raises_data_error(lambda: load_fc100(tmp_path, "train"), fc, "float32", "uint8 (n, H, W, 3)")
    with open(fc, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [0, 1, 1]}, fh, protocol=2)
    raises_data_error(lambda: load_fc100(tmp_path, "train"), fc, "2 images but 3 labels")
    with open(fc, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": print}, fh, protocol=4)
    raises_data_error(lambda: load_fc100(tmp_path, "train"), fc, "refusing to load builtins.print")


def test_folder_form_errors(tmp_path, cifar_truth):
    split = tmp_path / "train"
    split.mkdir()
    raises_data_error(lambda: load_cifar_fs(tmp_path, "train"), split, "no class folders")
    Image.fromarray(cifar_truth[0, 0]).save(split / "stray.png")
    raises_data_error(lambda: load_cifar_fs(tmp_path, "train"), "stray.png", "not in a class folder")
    os.remove(split / "stray.png")
    (split / "apple").mkdir()
    (split / "apple" / "0.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageSetDataError, match="0.png: not a readable image"):
        load_cifar_fs(tmp_path, "train")


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "tieredimagenet"}, "name = 'tieredimagenet' is unknown"),
    ({"split": "all"}, "split = 'all' is unknown"),
    ({"form": "csv", "name": "fc100"}, "form = 'csv' is unknown"),
    ({"dtype": torch.uint8}, "floating dtype"),
    ({"resample": "nearest"}, "resample = 'nearest' is unknown"),
    ({"size": 0}, "size = 0 is invalid"),
])
def test_bad_arguments(tmp_path, kwargs, needle):
    args = {"name": "miniimagenet", "root": tmp_path, "split": "train", **kwargs}
    with pytest.raises(InvalidArgumentError, match=needle):
        load_imageset(**args)
