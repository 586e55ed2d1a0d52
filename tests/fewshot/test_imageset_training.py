"""Training and evaluating on miniImageNet, FC100 and CIFAR-FS from a user path (``convtheory fewshot --dataset``):
tiny data sets written here in the community's file forms (miniImageNet split CSVs + images/, FC100 pickles,
CIFAR-FS class folders), the command end to end (one JSON row), the files' class split (test classes never
trained on), normalisation by the training split's statistics, every method on colour images, and bad input
(exit 2, one line)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from convtheory.cli import main
from convtheory.fewshot.episodes import EpisodeSampler
from convtheory.fewshot.train import (
    METHODS,
    FewShotConfig,
    FewShotImageSet,
    build_backbone,
    dataset_split,
    evaluate,
    load_dataset,
    train,
)
from convtheory.types import InvalidArgumentError

PER_CLASS = 8  # images per class
N_TRAIN, N_TEST = 6, 5  # classes per split
MINI_WNIDS = {"train": [f"n0{1000000 + i}" for i in range(N_TRAIN)],
              "test": [f"n0{2000000 + i}" for i in range(N_TEST)]}
CIFAR_IDS = {"train": [3, 17, 42, 58, 71, 99], "test": [5, 23, 61, 77, 88]}


def _pixels(rng, n_classes, side):
    """uint8 (C, PER_CLASS, side, side, 3): each class a different mean colour plus noise (learnable, not trivial)."""
    base = rng.integers(40, 216, (n_classes, 1, 1, 1, 3))
    noise = rng.integers(-40, 41, (n_classes, PER_CLASS, side, side, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_miniimagenet(root, rng, splits=("train", "test")):
    """Ravi and Larochelle's form: ``{split}.csv`` (filename,label) with the images in ``images/``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split in splits:
        wnids = MINI_WNIDS[split]
        pix = _pixels(rng, len(wnids), 84)
        lines = ["filename,label"]
        for i in range(PER_CLASS):  # rows interleave the classes (the real CSVs group them; order must not matter)
            for c, wnid in enumerate(wnids):
                name = f"{wnid}{i + 1:08d}.png"
                Image.fromarray(pix[c, i]).save(root / "images" / name)
                lines.append(f"{name},{wnid}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def write_fc100(root, rng, splits=("train", "test")):
    """MetaOptNet's form: ``FC100_{split}.pickle`` = {"data": uint8 (n, 32, 32, 3), "labels": CIFAR-100 ids}."""
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        ids = CIFAR_IDS[split]
        pix = _pixels(rng, len(ids), 32)
        labels = [ids[c] for c in range(len(ids)) for _ in range(PER_CLASS)]
        obj = {"data": pix.reshape(-1, 32, 32, 3), "labels": labels}
        with open(root / f"FC100_{split}.pickle", "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    return root


def write_cifarfs(root, rng, splits=("train", "test")):
    """The folder form: ``{split}/<class name>/*.png``."""
    for split in splits:
        ids = CIFAR_IDS[split]
        pix = _pixels(rng, len(ids), 32)
        for c, cid in enumerate(ids):
            d = root / split / f"class{cid:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(PER_CLASS):
                Image.fromarray(pix[c, i]).save(d / f"{i:03d}.png")
    return root


WRITERS = {"miniimagenet": write_miniimagenet, "fc100": write_fc100, "cifarfs": write_cifarfs}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagesets")
    return {name: write(base / name, np.random.default_rng(i)) for i, (name, write) in enumerate(WRITERS.items())}


def run_cli(capsys, *argv):
    code = main(["fewshot", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -------------------------------------------------------------------------------------------------- command
@pytest.mark.parametrize("method", ["protonet", "maml"])
@pytest.mark.parametrize("dataset", ["miniimagenet", "fc100", "cifarfs"])
def test_fewshot_command_trains_and_evaluates_each_benchmark(dataset, method, roots, capsys):
    code, out, err = run_cli(capsys, "--dataset", dataset, "--root", str(roots[dataset]), "--method", method,
                             "--iterations", "2", "--eval-episodes", "4", "--queries", "3", "--meta-batch", "2",
                             "--compile", "never", "--json")
    assert code == 0, err
    row = json.loads(out)  # exactly one JSON document on stdout
    side = 84 if dataset == "miniimagenet" else 32
    assert (row["dataset"], row["method"], row["ways"], row["shots"]) == (dataset, method, 5, 1)
    assert row["test_episodes"] == 4 and 0.0 <= row["accuracy"] <= 1.0  # a fraction, as on Omniglot
    assert row["iterations_run"] == 2 and not row["diverged"]
    assert (row["train_classes"], row["test_classes"]) == (N_TRAIN, N_TEST)
    # the dataset's defaults: its image size, conv4 with max-pool, 32 filters for MAML (64 for protonet), no rotations
    assert (row["image_size"], row["pool"], row["backbone"], row["rotations"]) == (side, "max", "conv4", False)
    assert row["hidden"] == (32 if method == "maml" else 64)
    if method == "maml":  # Finn et al.'s miniImageNet inner loop
        assert (row["inner_steps"], row["inner_lr"], row["eval_steps"]) == (5, 0.01, 10)


# ------------------------------------------------------------------------------------------ the class split
@pytest.mark.parametrize("dataset", ["miniimagenet", "fc100", "cifarfs"])
def test_test_split_classes_are_disjoint_from_training_classes(dataset, roots):
    cfg = FewShotConfig(dataset=dataset, method="protonet")
    ds = load_dataset(cfg, roots[dataset])
    assert isinstance(ds, FewShotImageSet)
    split = dataset_split(cfg, ds)
    train_ids, test_ids = set(split.train.tolist()), set(split.test.tolist())
    assert len(train_ids) == N_TRAIN and len(test_ids) == N_TEST and not train_ids & test_ids
    assert len(split.val) == 0 and train_ids | test_ids == set(range(ds.num_classes))
    # the classes behind the ids are the files' own: training ids name the train split's classes only
    names = {"miniimagenet": MINI_WNIDS, "fc100": {k: [str(i) for i in v] for k, v in CIFAR_IDS.items()},
             "cifarfs": {k: [f"class{i:03d}" for i in v] for k, v in CIFAR_IDS.items()}}[dataset]
    assert sorted(ds.classes[i] for i in train_ids) == sorted(names["train"])
    assert sorted(ds.classes[i] for i in test_ids) == sorted(names["test"])
    assert ds.images.shape[1:] == (3, cfg.image_size, cfg.image_size)
    # normalised by the training split's statistics: mean 0 and sd 1 per channel there (the test split: near)
    train_images = ds.images[torch.isin(ds.labels, split.train)]
    assert torch.allclose(train_images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(train_images.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    # training episodes draw training classes only
    sampler = EpisodeSampler(ds, 5, 1, 2, seed=0, classes=split.train)
    ep = sampler.sample(16)
    assert set(ep.classes.unique().tolist()) <= train_ids and ep.support.shape[2:] == ds.images.shape[1:]


def test_evaluation_draws_test_classes_and_is_seeded(roots):
    cfg = FewShotConfig(dataset="cifarfs", method="protonet", hidden=4, queries=2, eval_episodes=6, eval_batch=3)
    ds = load_dataset(cfg, roots["cifarfs"])
    split = dataset_split(cfg, ds)
    net = build_backbone(cfg)
    params = net.init(0, image_size=cfg.image_size)
    a = evaluate(cfg, net, params, ds, split.test)
    b = evaluate(cfg, net, params, ds, split.test)
    assert a.n == 6 and np.array_equal(a.accuracies, b.accuracies)


# ------------------------------------------------------------------------------------------- every method
def test_every_method_trains_on_colour_images(roots):
    ds = load_dataset(FewShotConfig(dataset="fc100"), roots["fc100"])
    for method in METHODS:
        cfg = FewShotConfig(dataset="fc100", method=method, hidden=4, meta_batch=2, queries=2, iterations=2,
                            inner_steps=None if method in ("protonet", "ridge") else 1,
                            eval_steps=None if method in ("protonet", "ridge") else 1, eval_episodes=2, eval_batch=2,
                            compile="never", log_every=1)
        r = train(cfg, ds, progress=False)
        assert not r.summary["diverged"] and r.test.n == 2, method
        assert np.isfinite(r.history["loss"]).all() and 0.0 <= r.summary["accuracy"] <= 1.0, method


def test_resnet12_runs_on_a_colour_set(roots):
    ds = load_dataset(FewShotConfig(dataset="cifarfs"), roots["cifarfs"])
    cfg = FewShotConfig(dataset="cifarfs", method="protonet", backbone="resnet12", meta_batch=1, queries=2,
                        iterations=1, eval_episodes=1, compile="never")
    r = train(cfg, ds, progress=False)
    assert r.test.n == 1 and "block3.conv2.weight" in r.params


# -------------------------------------------------------------------------------------------------- errors
def _one_line_exit_2(capsys, argv, *needles):
    try:
        code = main(["fewshot", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


def test_unknown_dataset_exits_2_with_one_line(tmp_path, capsys):
    _one_line_exit_2(capsys, ["--dataset", "tieredimagenet", "--root", str(tmp_path)], "tieredimagenet", "cifarfs")


@pytest.mark.parametrize("dataset,expected", [
    ("miniimagenet", "train.csv"), ("fc100", "FC100_train.pickle"), ("cifarfs", "CIFAR_FS_train.pickle")])
def test_root_without_the_files_exits_2_with_one_line(dataset, expected, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a data set")
    _one_line_exit_2(capsys, ["--dataset", dataset, "--root", str(tmp_path), "--method", "protonet"],
                     tmp_path, "no train data", expected)
    _one_line_exit_2(capsys, ["--dataset", dataset, "--root", str(tmp_path / "nowhere")], "nowhere",
                     "no such file")


def test_missing_test_split_and_bad_options_exit_2_with_one_line(tmp_path, capsys):
    root = write_fc100(tmp_path / "fc", np.random.default_rng(0), splits=("train",))
    _one_line_exit_2(capsys, ["--dataset", "fc100", "--root", str(root)], "no test data", "FC100_test.pickle")
    _one_line_exit_2(capsys, ["--dataset", "fc100", "--root", str(root / "FC100_train.pickle")],
                     "FC100_train.pickle", "is a file")
    _one_line_exit_2(capsys, ["--dataset", "fc100", "--root", str(root), "--split", "0.5,0.25,0.25"],
                     "--split", "omniglot only")
    _one_line_exit_2(capsys, ["--dataset", "cifarfs", "--root", str(root), "--image-size", "4"], "image_size = 4")


def test_splits_that_share_named_classes_are_refused(tmp_path):
    root = write_cifarfs(tmp_path, np.random.default_rng(0), splits=("train",))
    (root / "train").rename(root / "test")
    write_cifarfs(root, np.random.default_rng(1), splits=("train",))
    with pytest.raises(InvalidArgumentError, match="share classes.*disjoint"):
        load_dataset(FewShotConfig(dataset="cifarfs"), root)


def test_config_defaults_and_rotations():
    assert (FewShotConfig().image_size, FewShotConfig().pool, FewShotConfig().hidden) == (28, "stride", 64)
    c = FewShotConfig(dataset="miniimagenet", method="maml")
    assert (c.image_size, c.pool, c.hidden, c.rotations) == (84, "max", 32, False)
    assert FewShotConfig.from_dict(c.as_dict()) == c
    with pytest.raises(InvalidArgumentError, match="rotations = True is invalid for dataset 'fc100'"):
        FewShotConfig(dataset="fc100", rotations=True)
    with pytest.raises(InvalidArgumentError, match="dataset = 'cifar10' is unknown"):
        FewShotConfig(dataset="cifar10")
