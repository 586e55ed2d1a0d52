"""Episodic sampling: N-way K-shot tasks stacked on a leading task axis, and disjoint class splits.

An episode (Vinyals et al. 2016; Finn et al. 2017, Sec. 5.2) draws ``n_way`` distinct classes, relabels them
0..n_way-1 in the order drawn, and takes ``k_shot + n_query`` distinct drawings of each: the first ``k_shot``
form the support set (inner loss), the rest the query set (outer loss). Within a task the examples are grouped by
label, label-major: support label of row ``i`` is ``i // k_shot``, query label of row ``i`` is ``i // n_query``.
Every draw goes through one ``torch.Generator`` and whole-batch tensor ops (no per-image Python work), so the same
seed gives the same tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch

from ..problems.base import make_generator
from ..types import InvalidArgumentError, check_int
from .omniglot import OmniglotDataset

Tensor = torch.Tensor


class ClassSplit(NamedTuple):
    """Disjoint class ids (sorted int64 tensors) for meta-training, validation and test."""

    train: Tensor
    val: Tensor
    test: Tensor


@dataclass(frozen=True, eq=False)
class Episodes:
    """B tasks, task axis first.

    ``support``: (B, n_way*k_shot, 1, H, W); ``support_labels``: (B, n_way*k_shot) in 0..n_way-1;
    ``query``: (B, n_way*n_query, 1, H, W); ``query_labels``: (B, n_way*n_query);
    ``classes``: (B, n_way) dataset class id behind each task label.
    """

    support: Tensor
    support_labels: Tensor
    query: Tensor
    query_labels: Tensor
    classes: Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.support.shape[0])


@dataclass(frozen=True, eq=False)
class EpisodeIndex:
    """Where B tasks' images sit in the dataset: ``support`` (B, n_way*k_shot) and ``query`` (B, n_way*n_query)
    image indices, ``classes`` (B, n_way) class ids."""

    support: Tensor
    query: Tensor
    classes: Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def __getitem__(self, item) -> "EpisodeIndex":
        sl = item if isinstance(item, slice) else slice(item, item + 1)
        return EpisodeIndex(self.support[sl], self.query[sl], self.classes[sl])


# ----------------------------------------------------------------------------------------------- splitting
def split_classes(
    dataset: OmniglotDataset | int,
    fractions: Sequence[float] | Sequence[int] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> ClassSplit:
    """Split classes at random into disjoint train / val / test sets.

    ``fractions``: three non-negative fractions summing to 1, or three integer counts (of base characters).
    For a dataset, classes that share an (alphabet, character) name (its rotations) fall in the same split, so no
    character leaks from training into test; the counts apply to those groups. An int ``dataset`` means that many
    classes, each its own group. Group g goes to train if its rank in a seeded permutation is < n_train, to val if
    < n_train + n_val, else to test; fractional counts are rounded down for train and val.
    """
    if isinstance(dataset, int) and not isinstance(dataset, bool):
        n_classes = check_int("dataset (number of classes)", dataset, minimum=1)
        group = torch.arange(n_classes)
    else:
        names = dataset.classes
        uniq = {k: i for i, k in enumerate(dict.fromkeys(names))}
        group = torch.tensor([uniq[k] for k in names], dtype=torch.int64)
    n_groups = int(group.max()) + 1
    sizes = list(fractions)
    if len(sizes) != 3:
        raise InvalidArgumentError(f"fractions must have 3 entries (train, val, test), got {sizes}")
    if all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        if min(sizes) < 0 or sum(sizes) != n_groups:
            raise InvalidArgumentError(f"integer split sizes {sizes} must be >= 0 and sum to {n_groups} characters")
        n_train, n_val = sizes[0], sizes[1]
    else:
        fr = [float(s) for s in sizes]
        if min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-9:
            raise InvalidArgumentError(f"fractions {sizes} must be >= 0 and sum to 1")
        n_train, n_val = int(fr[0] * n_groups), int(fr[1] * n_groups)
    rank = torch.empty(n_groups, dtype=torch.int64)
    rank[torch.randperm(n_groups, generator=make_generator(seed))] = torch.arange(n_groups)
    r = rank[group]
    ids = torch.arange(group.numel())
    return ClassSplit(ids[r < n_train], ids[(r >= n_train) & (r < n_train + n_val)], ids[r >= n_train + n_val])


# -------------------------------------------------------------------------------------------------- sampling
class EpisodeSampler:
    """Draws meta-batches of ``n_way``-way ``k_shot``-shot tasks with ``n_query`` queries per class.

    ``classes``: the class ids to draw from (e.g. ``split_classes(ds).train``; default all). ``device``: where the
    images live and the batches are built (indices are drawn on the CPU generator, so the tasks do not depend on the
    device). ``sample(B)`` returns :class:`Episodes`; consecutive calls continue one seeded stream.

    >>> # sampler = EpisodeSampler(ds, n_way=5, k_shot=1, n_query=15, seed=0); ep = sampler.sample(32)
    """

    def __init__(
        self,
        dataset: OmniglotDataset,
        n_way: int,
        k_shot: int,
        n_query: int,
        seed: int | torch.Generator = 0,
        *,
        classes: Sequence[int] | Tensor | None = None,
        device: torch.device | str | None = None,
    ):
        self.n_way = check_int("n_way", n_way, minimum=1)
        self.k_shot = check_int("k_shot", k_shot, minimum=1)
        self.n_query = check_int("n_query", n_query, minimum=1)
        self.dataset = dataset
        ids = (torch.arange(dataset.num_classes) if classes is None
               else torch.as_tensor(classes, dtype=torch.int64).reshape(-1))
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= dataset.num_classes):
            raise InvalidArgumentError(f"classes must lie in 0..{dataset.num_classes - 1}")
        if ids.unique().numel() != ids.numel():
            raise InvalidArgumentError("classes must be distinct")
        if self.n_way > ids.numel():
            raise InvalidArgumentError(f"n_way = {self.n_way} is invalid; only {ids.numel()} classes to draw from")
        index, counts = dataset.class_index()
        need = self.k_shot + self.n_query
        if int(counts[ids].min()) < need:
            raise InvalidArgumentError(
                f"k_shot + n_query = {need} is invalid; the smallest class has {int(counts[ids].min())} drawings"
            )
        self.class_ids = ids
        self._index = index
        self._counts = counts
        self._gen = make_generator(seed)
        self.device = torch.device(device) if device is not None else dataset.images.device
        self._images = dataset.images.to(self.device)

    def sample_index(self, batch_size: int) -> EpisodeIndex:
        """Image indices of ``batch_size`` fresh tasks (draws from the sampler's stream)."""
        B = check_int("batch_size", batch_size, minimum=1)
        g, n, k, q = self._gen, self.n_way, self.k_shot, self.n_query
        # n distinct classes per task: the first n of a uniform random permutation.
        pick = torch.argsort(torch.rand(B, self.class_ids.numel(), generator=g), dim=1)[:, :n]
        cls = self.class_ids[pick]  # (B, n)
        # k + q distinct drawings per class: the first k + q of a random permutation of its (unpadded) slots.
        m = self._index.shape[1]
        keys = torch.rand(B, n, m, generator=g)
        keys = torch.where(torch.arange(m) < self._counts[cls][..., None], keys, 2.0)
        slots = torch.argsort(keys, dim=2)[..., : k + q]
        img = torch.gather(self._index[cls], 2, slots)  # (B, n, k + q)
        return EpisodeIndex(img[..., :k].reshape(B, n * k), img[..., k:].reshape(B, n * q), cls)

    def gather(self, index: EpisodeIndex) -> Episodes:
        """Materialise tasks from their indices: images with a channel axis (added to grey (n, H, W) images,
        kept for (n, C, H, W) ones), label-major labels."""
        B, n = index.classes.shape
        k, q = index.support.shape[1] // n, index.query.shape[1] // n
        dev = self.device
        x = self._images if self._images.dim() == 4 else self._images.unsqueeze(1)
        lab_s = torch.arange(n, device=dev).repeat_interleave(k).expand(B, n * k)
        lab_q = torch.arange(n, device=dev).repeat_interleave(q).expand(B, n * q)
        return Episodes(
            support=x[index.support.to(dev)],
            support_labels=lab_s.contiguous(),
            query=x[index.query.to(dev)],
            query_labels=lab_q.contiguous(),
            classes=index.classes.to(dev),
        )

    def sample(self, batch_size: int) -> Episodes:
        """A meta-batch of ``batch_size`` fresh tasks."""
        return self.gather(self.sample_index(batch_size))


class FixedEpisodes:
    """A fixed, seeded list of tasks for evaluation: the same ``count`` tasks every time.

    ``index``: their :class:`EpisodeIndex`; ``batches(B)`` yields them as :class:`Episodes` B at a time (so a
    large evaluation set never sits in memory as images); ``all()`` materialises every one.
    """

    def __init__(self, sampler: EpisodeSampler, index: EpisodeIndex):
        self._sampler = sampler
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, batch_size: int) -> Iterator[Episodes]:
        B = check_int("batch_size", batch_size, minimum=1)
        for start in range(0, len(self), B):
            yield self._sampler.gather(self.index[start:start + B])

    def all(self) -> Episodes:
        return self._sampler.gather(self.index)


def fixed_episodes(
    dataset: OmniglotDataset,
    n_way: int,
    k_shot: int,
    n_query: int,
    count: int,
    seed: int = 0,
    *,
    classes: Sequence[int] | Tensor | None = None,
    device: torch.device | str | None = None,
) -> FixedEpisodes:
    """``count`` tasks drawn once from ``seed`` (see :class:`EpisodeSampler`), so evaluations are comparable."""
    count = check_int("count", count, minimum=1)
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed, classes=classes, device=device)
    return FixedEpisodes(sampler, sampler.sample_index(count))
