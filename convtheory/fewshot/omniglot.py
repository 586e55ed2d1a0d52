"""Omniglot loader: the official image archives (or their unzipped folders) as one tensor of 28x28 characters.

Layout read (Lake, Salakhutdinov and Tenenbaum 2015; github.com/brendenlake/omniglot):
``[<top>/]<Alphabet>/<character>/<id>_<drawer>.png``: black strokes (0) on white (1), 105x105, one-bit PNG.
The archives ``images_background.zip`` (964 characters), ``images_evaluation.zip`` (659) and the two small
background subsets ``images_background_small{1,2}.zip`` (136 and 156 characters, sharing Greek and Latin) all use
it, with the top folder inside the zip; an unzipped copy may keep or drop that top folder.

Preprocessing (what most few-shot code does, e.g. Finn et al. 2017's data generator): invert so that strokes are 1
and background 0, then resize to ``size`` x ``size`` with Pillow (LANCZOS by default, BOX on request). Images come
back as float32 in [0, 1] (or uint8 in [0, 255] with ``dtype=torch.uint8``).

Characters found in several sources are kept once, keyed by (alphabet, character); classes are ordered by that
key, drawings within a class by file name, so the same files give the same tensor whatever order they are named in.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..types import InvalidArgumentError, check_choice, check_int

Tensor = torch.Tensor

#: Pillow filters the resize may use (``resample`` argument).
RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}
#: Archive names that hold Omniglot image sets (a folder given as root is searched for these).
ARCHIVE_PATTERN = re.compile(r"^images_(background|evaluation)[A-Za-z0-9_]*\.zip$")
EXPECTED_LAYOUT = (
    "an Omniglot image archive or folder: images_background*.zip / images_evaluation*.zip, or a folder laid out "
    "as <root>/[<top>/]<Alphabet>/<character>/<name>.png"
)


class OmniglotDataError(InvalidArgumentError):
    """A path given to an Omniglot reader is missing, laid out wrongly, or not a readable archive or PNG."""


# ------------------------------------------------------------------------------------------ dataset object
@dataclass(frozen=True, eq=False)
class OmniglotDataset:
    """Omniglot images with their labels and class names.

    ``images``: (n, size, size), strokes 1 / background 0 (float32 in [0, 1], or uint8 in [0, 255]);
    ``labels``: (n,) int64 class ids in 0..C-1; ``classes[c]``: the (alphabet, character) of class c;
    ``rotations[c]``: the rotation of class c in degrees (0, 90, 180, 270; all 0 unless loaded with
    ``rotations=True``); ``sources``: the archives or folders read.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[tuple[str, str], ...]
    rotations: tuple[int, ...]
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def alphabets(self) -> tuple[str, ...]:
        """The distinct alphabets, sorted."""
        return tuple(sorted({a for a, _ in self.classes}))

    @property
    def counts(self) -> Tensor:
        """(C,) number of drawings per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def class_index(self) -> tuple[Tensor, Tensor]:
        """Per-class image indices as a padded matrix: ``index`` (C, m) int64 (pad -1) and ``counts`` (C,).

        Row c lists the images of class c in dataset order; m is the largest class size.
        """
        counts = self.counts
        order = torch.argsort(self.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        m = int(counts.max()) if counts.numel() else 0
        pos = torch.arange(len(self)) - starts[self.labels[order]]
        index = torch.full((self.num_classes, m), -1, dtype=torch.int64)
        index[self.labels[order], pos] = order
        return index, counts

    def subset(self, class_ids: Sequence[int] | Tensor) -> "OmniglotDataset":
        """The classes ``class_ids`` only, relabelled 0..len(class_ids)-1 in the order given."""
        ids = torch.as_tensor(class_ids, dtype=torch.int64).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_classes):
            raise InvalidArgumentError(f"class_ids must lie in 0..{self.num_classes - 1}, got {ids.tolist()}")
        if ids.unique().numel() != ids.numel():
            raise InvalidArgumentError(f"class_ids must be distinct, got {ids.tolist()}")
        new = torch.full((self.num_classes,), -1, dtype=torch.int64)
        new[ids] = torch.arange(ids.numel())
        keep = new[self.labels] >= 0
        return OmniglotDataset(
            images=self.images[keep],
            labels=new[self.labels[keep]],
            classes=tuple(self.classes[i] for i in ids.tolist()),
            rotations=tuple(self.rotations[i] for i in ids.tolist()),
            sources=self.sources,
        )


# --------------------------------------------------------------------------------------------- preprocessing
def ink_from_png(data: bytes, *, where: str = "<bytes>") -> np.ndarray:
    """Decode one Omniglot PNG to uint8 ink: 255 on stroke pixels (black, value < 128), 0 on the background.

    For the official one-bit files this is exactly Lake et al.'s demo binarisation (ink where the pixel is 0).
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            gray = np.asarray(im.convert("L"))
    except Exception as exc:  # Pillow raises several unrelated types on bad input
        raise OmniglotDataError(f"{where}: not a readable PNG image ({exc})") from None
    return np.where(gray < 128, 255, 0).astype(np.uint8)


def resize_ink(ink: np.ndarray, size: int, resample: str = "lanczos") -> np.ndarray:
    """Resize uint8 ink images (..., H, W) to (..., size, size) with Pillow's ``resample`` filter (uint8 out).

    Used by the loader and available to models scored on the 20 one-shot runs, so both see the same pixels.
    """
    check_int("size", size, minimum=1)
    flt = RESAMPLE[check_choice("resample", resample, RESAMPLE)]
    arr = np.asarray(ink, dtype=np.uint8)
    flat = arr.reshape(-1, *arr.shape[-2:])
    if flat.shape[-2:] == (size, size):
        return arr.copy()
    out = np.empty((flat.shape[0], size, size), dtype=np.uint8)
    for i, img in enumerate(flat):  # decode-time only, never on a sampling path
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), flt))
    return out.reshape(*arr.shape[:-2], size, size)


# ------------------------------------------------------------------------------------------- source listing
def _split_members(relpaths: Iterable[str], where: str) -> dict[tuple[str, str], list[str]]:
    """Group relative PNG paths ``[top/]alphabet/character/file.png`` by (alphabet, character)."""
    groups: dict[tuple[str, str], list[str]] = {}
    depths = set()
    for rel in relpaths:
        parts = PurePosixPath(rel).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        depths.add(len(parts))
        if len(parts) not in (3, 4):
            raise OmniglotDataError(
                f"{where}: found {rel!r}, {len(parts) - 1} folder(s) deep; expected {EXPECTED_LAYOUT}"
            )
        groups.setdefault((parts[-3], parts[-2]), []).append(rel)
    if not groups:
        raise OmniglotDataError(f"{where}: no PNG images found; expected {EXPECTED_LAYOUT}")
    if len(depths) > 1:
        raise OmniglotDataError(f"{where}: PNG files at mixed depths {sorted(depths)}; expected {EXPECTED_LAYOUT}")
    if all(re.fullmatch(r"run\d+", a) and c in ("training", "test") for a, c in groups):
        raise OmniglotDataError(
            f"{where}: this is the 20 one-shot runs layout (runNN/training, runNN/test), not {EXPECTED_LAYOUT}; "
            "read it with convtheory.fewshot.runs.load_runs"
        )
    for files in groups.values():
        files.sort(key=lambda r: PurePosixPath(r).name)
    return groups


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise OmniglotDataError(f"{path}: not a readable zip archive ({exc}); expected {EXPECTED_LAYOUT}") from None


def _read_member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise OmniglotDataError(f"{path}: member {name!r} is corrupt ({exc}); the archive may be truncated") from None


def _folder_pngs(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        if len(rel.parts) > 4:
            continue
        out.extend((rel / f).as_posix() for f in filenames if f.lower().endswith(".png"))
    return out


def _resolve_sources(path: Path) -> list[Path]:
    """The archives or image folders a user path stands for."""
    if not path.exists():
        raise OmniglotDataError(f"{path}: no such file or folder; expected {EXPECTED_LAYOUT}")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise OmniglotDataError(f"{path}: not a zip archive; expected {EXPECTED_LAYOUT}")
        return [path]
    if _folder_pngs(path):
        return [path]
    zips = sorted(p for p in path.iterdir() if p.is_file() and ARCHIVE_PATTERN.match(p.name))
    if not zips:
        raise OmniglotDataError(
            f"{path}: folder holds neither PNG images nor image archives; expected {EXPECTED_LAYOUT}"
        )
    return zips


# ------------------------------------------------------------------------------------------------- decoding
_MEMORY: dict[tuple, tuple[tuple[tuple[str, str], ...], tuple[np.ndarray, ...]]] = {}


def _source_key(src: Path, size: int, resample: str) -> tuple:
    if src.is_file():
        st = src.stat()
        ident = (st.st_size, st.st_mtime_ns)
    else:
        files = _folder_pngs(src)
        ident = (len(files), max((src / f).stat().st_mtime_ns for f in files) if files else 0)
    return (str(src.resolve()), ident, int(size), resample)


def _decode_source(src: Path, size: int, resample: str) -> tuple[tuple[tuple[str, str], ...], tuple[np.ndarray, ...]]:
    """Decode one archive or folder: sorted (alphabet, character) keys and, per key, uint8 ink (n_c, size, size)."""
    if src.is_file():
        with _open_zip(src) as zf:
            pngs = [n for n in zf.namelist() if n.lower().endswith(".png") and not n.endswith("/")]
            groups = _split_members(pngs, str(src))
            keys = tuple(sorted(groups))
            arrays = tuple(
                resize_ink(np.stack([ink_from_png(_read_member(zf, n, src), where=f"{src}:{n}") for n in groups[k]]),
                           size, resample)
                for k in keys
            )
        return keys, arrays
    groups = _split_members(_folder_pngs(src), str(src))
    keys = tuple(sorted(groups))
    arrays = tuple(
        resize_ink(np.stack([ink_from_png((src / r).read_bytes(), where=str(src / r)) for r in groups[k]]),
                   size, resample)
        for k in keys
    )
    return keys, arrays


def _cached_decode(src: Path, size: int, resample: str, cache_dir: Path | None):
    key = _source_key(src, size, resample)
    if key in _MEMORY:
        return _MEMORY[key]
    file = None
    if cache_dir is not None:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
        file = Path(cache_dir) / f"omniglot-{digest}.npz"
        if file.exists():
            with np.load(file, allow_pickle=False) as z:
                names = [tuple(s.split("\x1f")) for s in z["keys"].tolist()]
                counts = z["counts"].tolist()
                flat = z["images"]
            arrays = tuple(np.split(flat, np.cumsum(counts)[:-1]))
            _MEMORY[key] = (tuple(names), arrays)
            return _MEMORY[key]
    result = _decode_source(src, size, resample)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=np.array(["\x1f".join(k) for k in result[0]]),
                     counts=np.array([a.shape[0] for a in result[1]]), images=np.concatenate(result[1]))
        os.replace(tmp, file)  # atomic: a killed run leaves no half-written cache
    _MEMORY[key] = result
    return result


def clear_memory_cache() -> None:
    """Forget every decoded source held in memory."""
    _MEMORY.clear()


# --------------------------------------------------------------------------------------------------- loader
def load_omniglot(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    size: int = 28,
    rotations: bool = False,
    resample: str = "lanczos",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
) -> OmniglotDataset:
    """Read Omniglot archives or folders into one :class:`OmniglotDataset`.

    ``paths``: one or several of: an image archive (``images_background*.zip``, ``images_evaluation*.zip``), an
    unzipped image folder (``<root>/[<top>/]<Alphabet>/<character>/*.png``), or a folder holding such archives
    (searched for ``images_background*.zip`` / ``images_evaluation*.zip`` when it holds no PNG tree itself).
    Characters present in several sources are kept once (the first source, in sorted path order, wins).
    ``size``: output side in pixels; ``resample``: "lanczos" or "box"; ``dtype``: float (values in [0, 1]) or
    ``torch.uint8`` (0..255). ``rotations=True`` adds each character rotated by 90, 180 and 270 degrees as a new
    class (class ``4 c + r`` is base character c rotated by ``90 r`` degrees; Santoro et al. 2016, Vinyals et al.
    2016). Decoded sources are cached in memory; ``cache_dir`` also keeps them as ``.npz`` files there.

    Raises :class:`OmniglotDataError` (an InvalidArgumentError) naming the path and the expected layout for a
    missing path, a folder laid out otherwise, or a truncated or corrupt archive.
    """
    check_int("size", size, minimum=1)
    check_choice("resample", resample, RESAMPLE)
    if not isinstance(rotations, bool):
        raise InvalidArgumentError(f"rotations must be True or False, got {rotations!r}")
    if dtype != torch.uint8 and not dtype.is_floating_point:
        raise InvalidArgumentError(f"dtype = {dtype} is invalid; use torch.uint8 or a floating dtype")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InvalidArgumentError("paths is empty; give at least one Omniglot archive or folder")
    sources: list[Path] = []
    for p in items:
        for s in _resolve_sources(Path(p)):
            if s.resolve() not in [t.resolve() for t in sources]:
                sources.append(s)
    sources.sort(key=lambda s: str(s))
    merged: dict[tuple[str, str], np.ndarray] = {}
    for src in sources:
        keys, arrays = _cached_decode(src, size, resample, None if cache_dir is None else Path(cache_dir))
        for k, a in zip(keys, arrays):
            merged.setdefault(k, a)
    names = tuple(sorted(merged))
    counts = torch.tensor([merged[k].shape[0] for k in names], dtype=torch.int64)
    images = torch.from_numpy(np.concatenate([merged[k] for k in names]))
    labels = torch.repeat_interleave(torch.arange(len(names)), counts)
    rots = (0,) * len(names)
    if rotations:
        # (4, n, H, W): rotation r of every image; class 4 c + r, grouped by class then rotation.
        stack = torch.stack([torch.rot90(images, r, dims=(1, 2)) for r in range(4)])
        rlabels = 4 * labels[None, :] + torch.arange(4)[:, None]
        order = torch.argsort(rlabels.reshape(-1), stable=True)
        images = stack.reshape(-1, size, size)[order]
        labels = rlabels.reshape(-1)[order]
        names = tuple(k for k in names for _ in range(4))
        rots = tuple(90 * r for _ in range(len(rots)) for r in range(4))
    images = images.contiguous() if dtype == torch.uint8 else images.to(dtype) / 255.0
    return OmniglotDataset(images=images, labels=labels, classes=names, rotations=rots,
                           sources=tuple(str(s) for s in sources))
