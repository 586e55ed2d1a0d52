"""The 20 official Omniglot one-shot runs (20-way, 1-shot, 20 queries each) and the MHD nearest-neighbour baseline.

Protocol (Lake, Salakhutdinov and Tenenbaum, Science 2015; ``all_runs.zip`` and ``demo_classification.py`` in
github.com/brendenlake/omniglot): run r holds ``training/classNN.png`` (one drawing of each of 20 characters of
one evaluation alphabet), ``test/itemNN.png`` (another drawer's drawing of each) and ``class_labels.txt``
(``runNN/test/itemXX.png runNN/training/classYY.png`` per line). A model sees the 20 training and 20 test
images of a run and names a training image for each test image; the run's error is the fraction named wrongly,
and the reported number is the mean of the 20 runs' errors. Published means: people 4.5%, BPL 3.3%, Siamese
convnet 8.0%, modified Hausdorff distance nearest neighbour 38.8% (the demo's stated result).
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from ..types import InvalidArgumentError
from .omniglot import OmniglotDataError, ink_from_png

Tensor = torch.Tensor

#: A scoring model: ``(train (20, H, W), test (20, H, W)) -> (20,) int64``, the predicted training index of each
#: test image. Images are float32 at the original 105x105, strokes 1 and background 0 (see :func:`load_runs`).
Scorer = Callable[[Tensor, Tensor], Tensor]

RUNS_LAYOUT = (
    "the 20 one-shot runs: all_runs.zip, or a folder with runNN/{training/classNN.png, test/itemNN.png, "
    "class_labels.txt} (optionally under all_runs/)"
)


@dataclass(frozen=True, eq=False)
class OneShotRun:
    """One run. ``train`` (20, H, W) and ``test`` (20, H, W): float32 ink (strokes 1), in sorted file-name order;
    ``answers`` (20,) int64: index into ``train`` of the correct class of each test image."""

    name: str
    train: Tensor
    test: Tensor
    answers: Tensor
    train_names: tuple[str, ...]
    test_names: tuple[str, ...]


@dataclass(frozen=True)
class RunsResult:
    """Per-run errors (fractions in [0, 1]) and their mean, the number the original protocol reports."""

    names: tuple[str, ...]
    errors: tuple[float, ...]

    @property
    def mean_error(self) -> float:
        return float(np.mean(self.errors))

    def as_dict(self) -> dict:
        return {"mean_error": self.mean_error, "errors": list(self.errors), "runs": list(self.names)}


# ---------------------------------------------------------------------------------------------------- reading
class _ZipReader:
    def __init__(self, path: Path):
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise OmniglotDataError(f"{path}: not a readable zip archive ({exc}); expected {RUNS_LAYOUT}") from None
        self.path = path
        self.names = [n for n in self.zf.namelist() if not n.endswith("/")]

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(rel)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as exc:
            raise OmniglotDataError(f"{self.path}: member {rel!r} is missing or corrupt ({exc})") from None


class _DirReader:
    def __init__(self, path: Path):
        self.path = path
        self.names = sorted(
            (Path(dp) / f).relative_to(path).as_posix() for dp, _, fs in os.walk(path) for f in fs
        )

    def read(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except OSError as exc:
            raise OmniglotDataError(f"{self.path}: cannot read {rel!r} ({exc})") from None


def _reader(root: Path):
    if not root.exists():
        raise OmniglotDataError(f"{root}: no such file or folder; expected {RUNS_LAYOUT}")
    if root.is_file():
        return _ZipReader(root)
    for name in ("all_runs.zip", "all_runs"):  # a data folder holding the runs
        if (root / name).exists() and not any(re.fullmatch(r"run\d+", p.name) for p in root.iterdir()):
            return _reader(root / name)
    return _DirReader(root)


def load_runs(root: str | os.PathLike) -> tuple[OneShotRun, ...]:
    """Read the 20 one-shot runs from ``all_runs.zip``, its unzipped folder, or a folder holding either.

    Images are decoded as in Lake et al.'s demo: ink where the PNG pixel is black, returned as float32 with
    strokes 1 (full 105x105 resolution; models resize themselves, e.g. with ``omniglot.resize_ink``).
    Raises :class:`OmniglotDataError` naming the path and the expected layout when anything is missing or corrupt.
    """
    root = Path(root)
    rd = _reader(root)
    prefix_of: dict[str, str] = {}
    for n in rd.names:
        parts = PurePosixPath(n).parts
        if len(parts) >= 2 and parts[-1] == "class_labels.txt" and re.fullmatch(r"run\d+", parts[-2]):
            prefix_of[parts[-2]] = "/".join(parts[:-2])
    if not prefix_of:
        raise OmniglotDataError(f"{root}: no runNN/class_labels.txt found; expected {RUNS_LAYOUT}")
    runs = []
    for run in sorted(prefix_of):
        base = (prefix_of[run] + "/" if prefix_of[run] else "")
        lines = rd.read(f"{base}{run}/class_labels.txt").decode("utf-8", "replace").split()
        if len(lines) % 2 or not lines:
            raise OmniglotDataError(f"{root}: {run}/class_labels.txt is not pairs of 'test train' paths")
        pairs = dict(zip(lines[0::2], lines[1::2]))  # test path -> correct training path (paths start at runNN/)
        test_names = tuple(sorted(pairs))
        train_names = tuple(sorted(set(pairs.values())))
        where = {t: i for i, t in enumerate(train_names)}
        answers = torch.tensor([where[pairs[t]] for t in test_names], dtype=torch.int64)

        def load(rels):
            ink = [ink_from_png(rd.read(base + r), where=f"{root}:{base + r}") for r in rels]
            if len({a.shape for a in ink}) != 1:
                raise OmniglotDataError(f"{root}: images of {run} differ in size")
            return torch.from_numpy(np.stack(ink)).float() / 255.0

        runs.append(OneShotRun(run, load(train_names), load(test_names), answers, train_names, test_names))
    return tuple(runs)


# ------------------------------------------------------------------------------------------------- evaluation
def evaluate_runs(runs: Sequence[OneShotRun], model: Scorer) -> RunsResult:
    """Score ``model`` on each run: error_r = (1/20) sum_i [model(train_r, test_r)_i != answer_{r,i}].

    The mean of the per-run errors is the protocol's reported number (Lake et al. 2015; demo_classification.py).
    """
    errors = []
    for run in runs:
        pred = torch.as_tensor(model(run.train, run.test)).reshape(-1).to(torch.int64)
        if pred.numel() != run.test.shape[0]:
            raise InvalidArgumentError(
                f"model returned {pred.numel()} predictions for run {run.name}; expected {run.test.shape[0]}"
            )
        errors.append(float((pred != run.answers).double().mean()))
    return RunsResult(tuple(r.name for r in runs), tuple(errors))


# ------------------------------------------------------------------------------------------------ MHD baseline
def ink_points(image: Tensor) -> Tensor:
    """Centred stroke coordinates of one image: (n, 2) float64 (row, col) of pixels > 0.5, minus their mean.

    As LoadImgAsPoints in Lake et al.'s demo (which subtracts the centroid before matching).
    """
    pts = torch.nonzero(image > 0.5).to(torch.float64)
    return pts - pts.mean(dim=0, keepdim=True)


def _mean_nn_distance(queries: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> np.ndarray:
    """(len(queries), len(targets)): entry (i, j) = (1/|Q_i|) sum_{q in Q_i} min_{t in T_j} ||q - t||_2.

    Exact nearest neighbours from one k-d tree per target, queried with every query point at once.
    """
    allq = np.concatenate(queries)
    n = np.array([len(q) for q in queries])
    seg = np.repeat(np.arange(len(queries)), n)
    out = np.empty((len(queries), len(targets)))
    for j, t in enumerate(targets):
        dist, _ = cKDTree(t).query(allq, k=1, workers=-1)
        out[:, j] = np.bincount(seg, weights=dist, minlength=len(queries)) / n
    return out


def mhd_matrix(a_points: Sequence[Tensor], b_points: Sequence[Tensor]) -> Tensor:
    """Modified Hausdorff distance between every pair of point sets: (len(a), len(b)) float64.

    MHD(A, B) = max(d(A, B), d(B, A)), d(A, B) = (1/|A|) sum_{a in A} min_{b in B} ||a - b||_2
    (Dubuisson and Jain 1994, distance D22 with the max combination). The inner minima are exact nearest
    neighbours (``scipy.spatial.cKDTree``), equal to the brute-force ``cdist`` minima of :func:`modified_hausdorff`
    but without forming the |A| x |B| distance matrices (20 runs: ~6e9 distances by brute force).
    """
    a = [p.detach().cpu().double().numpy() for p in a_points]
    b = [p.detach().cpu().double().numpy() for p in b_points]
    if any(p.ndim != 2 or p.shape[0] == 0 for p in a + b):
        raise InvalidArgumentError("mhd_matrix: every point set must be (n, d) with n >= 1 (an image without ink?)")
    d_ab = _mean_nn_distance(a, b)
    d_ba = _mean_nn_distance(b, a).T
    return torch.from_numpy(np.maximum(d_ab, d_ba))


def modified_hausdorff(a: Tensor, b: Tensor) -> float:
    """MHD between two ink images by brute force: ``cdist`` of their centred stroke coordinates (the demo's
    ModHausdorffDistance), MHD = max(mean_a min_b D, mean_b min_a D) with D = cdist(A, B)."""
    pa, pb = ink_points(a).numpy(), ink_points(b).numpy()
    if len(pa) == 0 or len(pb) == 0:
        raise InvalidArgumentError("modified_hausdorff: an image has no stroke pixels; the distance is undefined")
    d = cdist(pa, pb)
    return float(max(d.min(axis=1).mean(), d.min(axis=0).mean()))


def mhd_classifier(train: Tensor, test: Tensor) -> Tensor:
    """Nearest neighbour under the modified Hausdorff distance, as in Lake et al.'s demo_classification.py.

    Followed from the demo: binary images, stroke (black) pixels as point sets centred on their mean; cost[i, c] =
    MHD(test_i, train_c) (symmetric, so the direction does not matter); prediction_i = argmin_c cost[i, c], ties to
    the lowest training index (numpy argmin), training images in sorted file-name order.
    """
    cost = mhd_matrix([ink_points(t) for t in test], [ink_points(t) for t in train])
    return _first_argmin(cost)


def _first_argmin(cost: Tensor) -> Tensor:
    """Row-wise argmin, ties broken to the lowest index (numpy's rule; torch.argmin does not promise it)."""
    best = cost.amin(dim=1, keepdim=True)
    idx = torch.arange(cost.shape[1]).expand_as(cost)
    return torch.where(cost == best, idx, cost.shape[1]).amin(dim=1)


# --------------------------------------------------------------------------------------------- model registry
CHECKPOINT_HINT = "write a checkpoint with `convtheory fewshot --checkpoint PATH`"

#: Named scoring models: name -> factory returning a :data:`Scorer`. Extend by adding an entry.
SCORERS: dict[str, Callable[[], Scorer]] = {"mhd": lambda: mhd_classifier}


def resolve_scorer(spec: str, registry: Mapping[str, Callable[[], Scorer]] | None = None) -> Scorer:
    """A :data:`Scorer` from a registered name (``mhd``) or a checkpoint written by ``convtheory fewshot``
    (:func:`convtheory.fewshot.train.checkpoint_scorer`).

    Raises InvalidArgumentError naming ``spec`` for an unknown name, a missing file, or a file that is not such a
    checkpoint.
    """
    reg = SCORERS if registry is None else registry
    if spec in reg:
        return reg[spec]()
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgumentError(
            f"model {spec!r} is neither a known model ({', '.join(sorted(reg))}) nor an existing checkpoint file; "
            f"{CHECKPOINT_HINT}"
        )
    from .train import checkpoint_scorer  # the training stack loads only when a checkpoint is asked for

    try:
        return checkpoint_scorer(path)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"model {spec!r}: {exc}; {CHECKPOINT_HINT}") from None
