"""miniImageNet, FC100 and CIFAR-FS loaders: the files the community distributes, read from a user path.

Nothing is downloaded. Each loader returns one split as an :class:`ImageSet`: float images (n, 3, H, W) normalised
per channel, int64 labels 0..C-1 grouped by class, and the class names; :class:`ImageEpisodeSampler` draws N-way
K-shot episodes from it exactly as :class:`~convtheory.fewshot.episodes.EpisodeSampler` does from Omniglot.

Forms read (``split`` is "train", "val" or "test"; ``root`` is the folder holding the files, or one file itself):

miniImageNet (Vinyals et al. 2016 with the Ravi and Larochelle 2017 class split: 64 / 16 / 20 classes of 600):
  ``csv``      ``<root>/{split}.csv`` with header ``filename,label`` (label: a WordNet id such as n01532829) and the
               images in ``<root>/images/<filename>`` (JPEGs of any size, resized to ``size`` x ``size``);
  ``cache``    ``<root>/mini-imagenet-cache-{split}.pkl``: a dict with "image_data" uint8 (n, 84, 84, 3) and
               "class_dict" {wnid: [image indices]};
  ``category`` ``<root>/miniImageNet_category_split_{train_phase_train,val,test}.pickle`` (MetaOptNet, RFS): a
               python-2 pickle of a dict with "data" uint8 (n, 84, 84, 3), "labels" (ints) and, optionally,
               "catname2label" {wnid: int};
  ``folder``   ``<root>/{split}/<wnid>/*.jpg`` (or .png).
FC100 (Oreshkin et al. 2018: CIFAR-100 superclasses, 60 / 20 / 20 classes of 600) and CIFAR-FS (Bertinetto et al.
2019: 64 / 16 / 20 CIFAR-100 classes):
  ``pickle``   ``<root>/FC100_{split}.pickle`` / ``<root>/CIFAR_FS_{split}.pickle`` (MetaOptNet): a python-2 pickle
               of a dict with "data" uint8 (n, 32, 32, 3) and "labels" (ints, CIFAR-100 class ids);
  ``folder``   ``<root>/{split}/<class name>/*.png``.

Class order: WordNet ids or folder names sorted; integer labels sorted (named by "catname2label" when the pickle has
it, else by the integer). Images within a class keep file order (CSV rows, class_dict lists, pickle rows; folder
files sorted by name), so the CSV and pickled forms of the same data give the same tensor.

Pickles are read with ``encoding="latin1"`` (they were written by python 2) through an unpickler that accepts only
numpy arrays, numpy scalars and plain containers, so a file cannot run code when it is loaded.

Normalisation: ``images = (pixels / 255 - mean) / std`` per channel, with the constants every MetaOptNet / RFS
derived loader uses (miniImageNet: mean (120.40, 115.59, 104.54) / 255, std (70.68, 68.28, 72.55) / 255; CIFAR-FS
and FC100: mean (129.38, 124.11, 112.48) / 255, std (68.21, 65.43, 70.46) / 255); the constants travel with the
set as ``mean`` and ``std``. Memory: the 38 400 training images of miniImageNet take 3.3 GB as float32.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..types import InvalidArgumentError, check_choice, check_int
from .episodes import EpisodeSampler, fixed_episodes

Tensor = torch.Tensor

SPLITS = ("train", "val", "test")
#: Pillow filters the resize may use (``resample`` argument).
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,  # Ravi and Larochelle's miniImageNet script
    "bilinear": Image.Resampling.BILINEAR,  # torchvision's Resize default
    "box": Image.Resampling.BOX,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

MINIIMAGENET_MEAN = tuple(x / 255.0 for x in (120.39586422, 115.59361427, 104.54012653))
MINIIMAGENET_STD = tuple(x / 255.0 for x in (70.68188272, 68.27635443, 72.54505529))
CIFAR_MEAN = tuple(x / 255.0 for x in (129.37731888, 124.10583864, 112.47758569))
CIFAR_STD = tuple(x / 255.0 for x in (68.20947949, 65.43124043, 70.45866994))


class ImageSetDataError(InvalidArgumentError):
    """A path given to an image-set reader is missing, laid out wrongly, truncated or not readable."""


# ------------------------------------------------------------------------------------------ dataset object
@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a colour few-shot benchmark.

    ``images``: (n, 3, size, size) float, ``(pixels / 255 - mean) / std`` per channel; ``labels``: (n,) int64 class
    ids in 0..C-1, grouped by class; ``classes[c]``: the name of class c (a WordNet id, a folder name, or the
    pickle's integer label as text); ``mean``, ``std``: the per-channel constants applied (0 and 1 when not
    normalised); ``name``: "miniimagenet", "fc100" or "cifar-fs"; ``split``; ``form``: the file form read;
    ``sources``: the files or folders read.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    split: str = ""
    form: str = ""
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def counts(self) -> Tensor:
        """(C,) number of images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def class_index(self) -> tuple[Tensor, Tensor]:
        """Per-class image indices as a padded matrix: ``index`` (C, m) int64 (pad -1) and ``counts`` (C,)."""
        counts = self.counts
        order = torch.argsort(self.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        m = int(counts.max()) if counts.numel() else 0
        pos = torch.arange(len(self)) - starts[self.labels[order]]
        index = torch.full((self.num_classes, m), -1, dtype=torch.int64)
        index[self.labels[order], pos] = order
        return index, counts

    def unit(self, x: Tensor | None = None) -> Tensor:
        """Undo the normalisation: pixel values in [0, 1] of ``x`` (default: every image), channel axis at -3."""
        x = self.images if x is None else x
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return x * std + mean

    def subset(self, class_ids: Sequence[int] | Tensor) -> "ImageSet":
        """The classes ``class_ids`` only, relabelled 0..len(class_ids)-1 in the order given."""
        ids = torch.as_tensor(class_ids, dtype=torch.int64).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_classes):
            raise InvalidArgumentError(f"class_ids must lie in 0..{self.num_classes - 1}, got {ids.tolist()}")
        if ids.unique().numel() != ids.numel():
            raise InvalidArgumentError(f"class_ids must be distinct, got {ids.tolist()}")
        new = torch.full((self.num_classes,), -1, dtype=torch.int64)
        new[ids] = torch.arange(ids.numel())
        keep = new[self.labels] >= 0
        return ImageSet(images=self.images[keep], labels=new[self.labels[keep]],
                        classes=tuple(self.classes[i] for i in ids.tolist()), mean=self.mean, std=self.std,
                        name=self.name, split=self.split, form=self.form, sources=self.sources)


# ---------------------------------------------------------------------------------------------- episodes
#: Colour images sample exactly like Omniglot's (``EpisodeSampler.gather`` keeps an existing channel axis).
ImageEpisodeSampler = EpisodeSampler
fixed_image_episodes = fixed_episodes


# --------------------------------------------------------------------------------------- raw (uint8) reads
@dataclass(frozen=True, eq=False)
class _Raw:
    """uint8 images (n, H, W, 3) grouped by class, labels (n,) in 0..C-1, class names, sources."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    sources: tuple[str, ...]


def _fail(where: Path | str, what: str, layout: str) -> ImageSetDataError:
    return ImageSetDataError(f"{where}: {what}; expected {layout}")


_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars, dicts, lists, strings and numbers; refuses every other global."""

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core"):  # numpy 1.x and python 2 pickles
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and plain containers")
        return super().find_class(module, name)


def _load_pickle(path: Path, layout: str):
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc})", layout) from None
    except Exception as exc:  # truncated or corrupt pickles raise many unrelated types
        raise _fail(path, f"not a readable pickle, perhaps truncated ({type(exc).__name__}: {exc})", layout) from None


def _check_pixels(data, path: Path, layout: str) -> np.ndarray:
    arr = np.asarray(data) if isinstance(data, np.ndarray) else None
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        got = f"{type(data).__name__}" if arr is None else f"{arr.dtype} array of shape {arr.shape}"
        raise _fail(path, f"image array is {got}, not uint8 (n, H, W, 3) with n >= 1", layout)
    return arr


def _group(pixels: np.ndarray, codes: np.ndarray, classes: tuple[str, ...], sources) -> _Raw:
    """Stable-sort images by class code so each class is contiguous (file order kept within a class)."""
    order = np.argsort(codes, kind="stable")
    return _Raw(pixels[order], codes[order].astype(np.int64), classes, tuple(str(s) for s in sources))


def _keys(obj) -> str:
    return str(sorted(map(str, obj))) if isinstance(obj, dict) else f"a {type(obj).__name__}"


def _raw_from_arrays(obj: dict, path: Path, layout: str) -> _Raw:
    """``{"data": uint8 (n, H, W, 3), "labels": [int], "catname2label"?: {name: int}}`` (MetaOptNet)."""
    pixels = _check_pixels(obj["data"], path, layout)
    try:
        labels = np.asarray(obj["labels"]).astype(np.int64, casting="same_kind").reshape(-1)
    except (TypeError, ValueError):
        raise _fail(path, "'labels' are not integers", layout) from None
    if labels.shape[0] != pixels.shape[0]:
        raise _fail(path, f"{pixels.shape[0]} images but {labels.shape[0]} labels", layout)
    uniq, codes = np.unique(labels, return_inverse=True)
    names = obj.get("catname2label")
    names = {int(v): str(k) for k, v in names.items()} if isinstance(names, dict) else {}
    classes = tuple(names.get(int(u), str(int(u))) for u in uniq)
    return _group(pixels, codes.reshape(-1), classes, [path])


def _raw_from_cache(obj: dict, path: Path, layout: str) -> _Raw:
    """``{"image_data": uint8 (n, 84, 84, 3), "class_dict": {wnid: [indices]}}`` (mini-imagenet-cache-*.pkl)."""
    pixels = _check_pixels(obj["image_data"], path, layout)
    class_dict = obj["class_dict"]
    if not isinstance(class_dict, dict) or not class_dict:
        raise _fail(path, "'class_dict' is not a non-empty dict {wnid: [indices]}", layout)
    lookup = {str(k): v for k, v in class_dict.items()}
    classes = tuple(sorted(lookup))
    try:
        idx = [np.asarray(lookup[c]).astype(np.int64, casting="same_kind").reshape(-1) for c in classes]
    except (TypeError, ValueError):
        raise _fail(path, "'class_dict' values are not lists of image indices", layout) from None
    flat = np.concatenate(idx)
    if flat.size == 0 or flat.min() < 0 or flat.max() >= pixels.shape[0]:
        raise _fail(path, f"'class_dict' indices must lie in 0..{pixels.shape[0] - 1}", layout)
    codes = np.repeat(np.arange(len(classes)), [len(i) for i in idx])
    return _Raw(pixels[flat], codes, classes, (str(path),))


def _read_pickle(path: Path, layout: str) -> tuple[_Raw, str]:
    """A cache pickle ("image_data", "class_dict") or an array pickle ("data", "labels"), told apart by its keys."""
    obj = _load_pickle(path, layout)
    if isinstance(obj, dict) and {"image_data", "class_dict"} <= set(obj):
        return _raw_from_cache(obj, path, layout), "cache"
    if isinstance(obj, dict) and {"data", "labels"} <= set(obj):
        return _raw_from_arrays(obj, path, layout), "arrays"
    raise _fail(path, f"holds {_keys(obj)}, not a dict with 'data' and 'labels' (or 'image_data' and "
                      "'class_dict')", layout)


def _decode_image(path: Path, size: int, resample: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), RESAMPLE[resample])
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageSetDataError(f"{path}: image file is missing") from None
    except Exception as exc:  # Pillow raises several unrelated types on bad input
        raise ImageSetDataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _decode_all(files: Sequence[Path], size: int, resample: str) -> np.ndarray:
    """Decode and resize image files to uint8 (n, size, size, 3), in order (Pillow releases the GIL: threads)."""
    workers = max(1, min(8, os.cpu_count() or 1, len(files)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda f: _decode_image(f, size, resample), files, chunksize=64))
    return np.stack(arrays)


def _read_csv(path: Path, size: int, resample: str, layout: str) -> _Raw:
    """Ravi and Larochelle's split CSV (``filename,label``) with the images in ``images/`` next to it."""
    images_dir = path.parent / "images"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read ({exc})", layout) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        head = rows[0] if rows else "nothing"
        raise _fail(path, f"first line is {head}, not the header filename,label", layout)
    if len(rows) == 1:
        raise _fail(path, "no image rows after the header", layout)
    if not images_dir.is_dir():
        raise _fail(images_dir, "no such folder (the CSV names images in it)", layout)
    files, wnids = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise _fail(path, f"line {line} is {row}, not filename,label", layout)
        file = images_dir / row[0].strip()
        if not file.is_file():
            raise _fail(path, f"line {line}: label {row[1].strip()} names image {file}, which is missing", layout)
        files.append(file)
        wnids.append(row[1].strip())
    classes = tuple(sorted(set(wnids)))
    code = {c: i for i, c in enumerate(classes)}
    codes = np.array([code[w] for w in wnids], dtype=np.int64)
    return _group(_decode_all(files, size, resample), codes, classes, [path, images_dir])


def _read_folder(path: Path, size: int, resample: str, layout: str) -> _Raw:
    """``<split folder>/<class>/<image>``: classes and files sorted by name."""
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        raise _fail(path, f"image {stray[0]!r} lies directly in the split folder, not in a class folder", layout)
    groups = []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                       and not f.name.startswith("."))
        if files:
            groups.append((d.name, files))
    if not groups:
        raise _fail(path, "no class folders holding .png or .jpg images", layout)
    files = [f for _, fs in groups for f in fs]
    codes = np.repeat(np.arange(len(groups)), [len(fs) for _, fs in groups])
    return _Raw(_decode_all(files, size, resample), codes, tuple(n for n, _ in groups), (str(path),))


# -------------------------------------------------------------------------------------------- the forms
_CATEGORY_SPLIT = {"train": "train_phase_train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class _Spec:
    """A benchmark: its file forms in detection order (form -> file or folder for a split), constants, size."""

    name: str
    forms: dict[str, Callable[[Path, str], Path]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int

    def layout(self, split: str) -> str:
        where = {
            "csv": f"{split}.csv (header filename,label) beside an images/ folder",
            "cache": f"mini-imagenet-cache-{split}.pkl",
            "category": f"miniImageNet_category_split_{_CATEGORY_SPLIT[split]}.pickle",
            "pickle": "" if "pickle" not in self.forms else self.forms["pickle"](Path(""), split).name,
            "folder": f"{split}/<class>/*.png or *.jpg",
        }
        return f"a {self.name} folder holding " + ", or ".join(where[f] for f in self.forms)


SPECS: dict[str, _Spec] = {
    "miniimagenet": _Spec(
        "miniimagenet",
        {
            "csv": lambda root, s: root / f"{s}.csv",
            "cache": lambda root, s: root / f"mini-imagenet-cache-{s}.pkl",
            "category": lambda root, s: root / f"miniImageNet_category_split_{_CATEGORY_SPLIT[s]}.pickle",
            "folder": lambda root, s: root / s,
        },
        MINIIMAGENET_MEAN, MINIIMAGENET_STD, 84,
    ),
    "fc100": _Spec(
        "fc100",
        {"pickle": lambda root, s: root / f"FC100_{s}.pickle", "folder": lambda root, s: root / s},
        CIFAR_MEAN, CIFAR_STD, 32,
    ),
    "cifar-fs": _Spec(
        "cifar-fs",
        {"pickle": lambda root, s: root / f"CIFAR_FS_{s}.pickle", "folder": lambda root, s: root / s},
        CIFAR_MEAN, CIFAR_STD, 32,
    ),
}


def _locate(root: Path, spec: _Spec, split: str, form: str) -> tuple[str, Path]:
    """The form and the file or folder to read: ``root`` itself if a file, else the first form found in it."""
    layout = spec.layout(split)
    if not root.exists():
        raise _fail(root, "no such file or folder", layout)
    if root.is_file():
        suffix = root.suffix.lower()
        found = "csv" if suffix == ".csv" and "csv" in spec.forms else "pickle" if suffix in (".pkl", ".pickle") else ""
        if not found:
            raise _fail(root, "not a file of this benchmark's forms", layout)
        if form in ("csv", "folder") and form != found:
            raise _fail(root, f"is a {found} file, not the {form} form asked for", layout)
        return found, root
    for name, where in spec.forms.items():
        if form not in ("auto", name):
            continue
        path = where(root, split)
        if path.is_dir() if name == "folder" else path.is_file():
            return name, path
    what = f"no {split} data found" if form == "auto" else f"no {split} data in the {form} form"
    raise _fail(root, what, layout)


def _read(spec: _Spec, form: str, path: Path, size: int, resample: str, layout: str) -> tuple[_Raw, str]:
    """Raw pixels and the form actually read ("cache", "category" or "pickle" for pickles, by their keys)."""
    if form == "csv":
        return _read_csv(path, size, resample, layout), form
    if form == "folder":
        return _read_folder(path, size, resample, layout), form
    raw, kind = _read_pickle(path, layout)
    return raw, "cache" if kind == "cache" else "category" if spec.name == "miniimagenet" else "pickle"


def _resize_pixels(pixels: np.ndarray, size: int, resample: str) -> np.ndarray:
    if pixels.shape[1:3] == (size, size):
        return pixels
    flt = RESAMPLE[resample]
    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), flt)) for p in pixels])


def _normalised(pixels: np.ndarray, mean, std, dtype: torch.dtype, chunk: int = 2048) -> Tensor:
    """uint8 (n, H, W, 3) -> (n, 3, H, W) ``(pixels / 255 - mean) / std`` in float32, chunk by chunk, then ``dtype``."""
    n, H, W, C = pixels.shape
    out = torch.empty((n, C, H, W), dtype=dtype)
    m = torch.tensor(mean, dtype=torch.float32).reshape(C, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(C, 1, 1)
    src = torch.from_numpy(np.ascontiguousarray(pixels))
    for i in range(0, n, chunk):
        x = src[i:i + chunk].permute(0, 3, 1, 2).to(torch.float32)
        out[i:i + chunk] = ((x / 255.0 - m) / s).to(dtype)
    return out


# --------------------------------------------------------------------------------------------- disk cache
def _cache_key(spec: _Spec, form: str, path: Path, size: int, resample: str) -> str:
    """Identity of a decoded CSV or folder source: its path, the files' sizes and times, size and filter."""
    if form == "csv":
        items = [path, path.parent / "images"]
    else:
        items = [path, *sorted(d for d in path.iterdir() if d.is_dir())]
    ident = [(str(p.resolve()), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns) for p in items]
    return hashlib.sha256(repr((spec.name, form, ident, size, resample)).encode()).hexdigest()[:24]


def _cached_read(spec, form, path, size, resample, layout, cache_dir: Path | None) -> tuple[_Raw, str]:
    if cache_dir is None or form not in ("csv", "folder"):
        return _read(spec, form, path, size, resample, layout)
    file = cache_dir / f"{spec.name}-{form}-{_cache_key(spec, form, path, size, resample)}.npz"
    if file.exists():
        try:
            with np.load(file, allow_pickle=False) as z:
                raw = _Raw(z["pixels"], z["labels"], tuple(z["classes"].tolist()), tuple(z["sources"].tolist()))
            return raw, form
        except Exception:  # a damaged cache file is rebuilt, never trusted
            pass
    raw, form = _read(spec, form, path, size, resample, layout)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, pixels=raw.pixels, labels=raw.labels, classes=np.array(raw.classes),
                 sources=np.array(raw.sources))
    os.replace(tmp, file)  # atomic: a killed run leaves no half-written cache
    return raw, form


# --------------------------------------------------------------------------------------------------- loaders
def load_imageset(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    *,
    form: str = "auto",
    size: int | None = None,
    resample: str = "lanczos",
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """Read one split of ``name`` ("miniimagenet", "fc100", "cifar-fs") from ``root`` into an :class:`ImageSet`.

    ``root``: the folder holding the benchmark's files (see the module docstring for the forms), or one of those
    files itself (a split CSV, a cache ``.pkl`` or an array ``.pickle``; ``split`` then only names it).
    ``form``: "auto" (the first form found, in the order listed) or one form's name. ``size``: output side in
    pixels (84 for miniImageNet, 32 otherwise; images of any other size are resized with Pillow's ``resample``
    filter: "lanczos", "bilinear" or "box"). ``normalize``: apply the benchmark's per-channel mean and std (else
    values in [0, 1], recorded as mean 0 and std 1). ``dtype``: a floating dtype. ``cache_dir``: keep decoded
    CSV / folder sources there as ``.npz`` files (decoding the JPEGs is the slow part).

    Raises :class:`ImageSetDataError` (an InvalidArgumentError) naming the path and the expected layout for a
    missing path, a folder laid out otherwise, a truncated or foreign pickle, or a CSV row whose image is missing.
    """
    spec = SPECS[check_choice("name", name, SPECS)]
    check_choice("split", split, SPLITS)
    check_choice("form", form, ("auto", *spec.forms))
    size = spec.size if size is None else check_int("size", size, minimum=1)
    check_choice("resample", resample, RESAMPLE)
    if not isinstance(normalize, bool):
        raise InvalidArgumentError(f"normalize must be True or False, got {normalize!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgumentError(f"dtype = {dtype} is invalid; use a floating dtype such as torch.float32")
    layout = spec.layout(split)
    found, path = _locate(Path(root), spec, split, form)
    cache = None if cache_dir is None else Path(cache_dir)
    raw, found = _cached_read(spec, found, path, size, resample, layout, cache)
    pixels = _resize_pixels(raw.pixels, size, resample)
    mean, std = (spec.mean, spec.std) if normalize else ((0.0,) * 3, (1.0,) * 3)
    return ImageSet(images=_normalised(pixels, mean, std, dtype), labels=torch.from_numpy(raw.labels.astype(np.int64)),
                    classes=raw.classes, mean=tuple(mean), std=tuple(std), name=spec.name, split=split,
                    form=found, sources=raw.sources)


def load_miniimagenet(root: str | os.PathLike, split: str = "train", **kwargs) -> ImageSet:
    """miniImageNet (Ravi and Larochelle split) from ``root``; see :func:`load_imageset` for the arguments."""
    return load_imageset("miniimagenet", root, split, **kwargs)


def load_fc100(root: str | os.PathLike, split: str = "train", **kwargs) -> ImageSet:
    """FC100 from ``root``; see :func:`load_imageset` for the arguments."""
    return load_imageset("fc100", root, split, **kwargs)


def load_cifar_fs(root: str | os.PathLike, split: str = "train", **kwargs) -> ImageSet:
    """CIFAR-FS from ``root``; see :func:`load_imageset` for the arguments."""
    return load_imageset("cifar-fs", root, split, **kwargs)


#: name -> loader
IMAGESETS: dict[str, Callable[..., ImageSet]] = {
    "miniimagenet": load_miniimagenet,
    "fc100": load_fc100,
    "cifar-fs": load_cifar_fs,
}
