"""Episodic sampler and class splits: shapes, labels, class membership, determinism, disjointness, uniformity."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convtheory.fewshot.episodes import EpisodeSampler, fixed_episodes, split_classes
from convtheory.fewshot.omniglot import OmniglotDataset, load_omniglot
from convtheory.types import InvalidArgumentError

FAST = settings(max_examples=25, deadline=None)
DATA = Path(__file__).resolve().parents[2] / "data" / "omniglot"


@pytest.fixture(scope="module")
def omniglot():
    return load_omniglot(DATA)


def toy(counts, side=4):
    """Classes with the given numbers of drawings; image i is filled with the value i (so gathers are checkable)."""
    counts = torch.as_tensor(counts)
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    n = int(counts.sum())
    images = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, side, side).clone()
    names = tuple((f"A{c % 3}", f"character{c:02d}") for c in range(len(counts)))
    return OmniglotDataset(images, labels, names, (0,) * len(counts))


def check_tasks(ds, ep, n, k, q):
    """Every task: n distinct classes; k + q distinct drawings per class; images are the indexed dataset images."""
    B = ep.num_tasks
    assert ep.support.shape == (B, n * k, 1) + ds.images.shape[1:]
    assert ep.query.shape == (B, n * q, 1) + ds.images.shape[1:]
    assert torch.equal(ep.support_labels, torch.arange(n).repeat_interleave(k).expand(B, -1))
    assert torch.equal(ep.query_labels, torch.arange(n).repeat_interleave(q).expand(B, -1))
    for cls in ep.classes:
        assert cls.unique().numel() == n
    # Recover each image's dataset index from its fill value (toy data) and check its class.
    s_idx = ep.support[:, :, 0, 0, 0].long()
    q_idx = ep.query[:, :, 0, 0, 0].long()
    assert torch.equal(ds.labels[s_idx], torch.gather(ep.classes, 1, ep.support_labels))
    assert torch.equal(ds.labels[q_idx], torch.gather(ep.classes, 1, ep.query_labels))
    both = torch.cat([s_idx, q_idx], dim=1)
    for row in both:
        assert row.unique().numel() == row.numel()  # no drawing twice in a task (support and query disjoint)


@FAST
@given(
    counts=st.lists(st.integers(2, 9), min_size=2, max_size=12),
    n=st.integers(1, 12),
    k=st.integers(1, 4),
    q=st.integers(1, 4),
    B=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_tasks_are_well_formed_on_uneven_classes(counts, n, k, q, B, seed):
    ds = toy(counts)
    n = min(n, len(counts))
    eligible = [c for c, m in enumerate(counts) if m >= k + q]
    if len(eligible) < n:
        with pytest.raises(InvalidArgumentError):
            EpisodeSampler(ds, n, k, q, seed)
        return
    sampler = EpisodeSampler(ds, n, k, q, seed, classes=eligible)
    ep = sampler.sample(B)
    check_tasks(ds, ep, n, k, q)
    assert set(ep.classes.flatten().tolist()) <= set(eligible)


def test_real_omniglot_shapes_and_labels(omniglot):
    ep = EpisodeSampler(omniglot, n_way=20, k_shot=1, n_query=15, seed=0).sample(8)
    assert ep.support.shape == (8, 20, 1, 28, 28) and ep.query.shape == (8, 300, 1, 28, 28)
    assert ep.support.dtype == torch.float32 and int(ep.support_labels.max()) == 19
    idx = EpisodeSampler(omniglot, n_way=20, k_shot=1, n_query=15, seed=0).sample_index(8)
    assert torch.equal(ep.support, omniglot.images[idx.support].unsqueeze(2))
    assert torch.equal(omniglot.labels[idx.query], torch.gather(idx.classes, 1, ep.query_labels))


def test_same_seed_same_tasks_different_seed_different_tasks(omniglot):
    a = EpisodeSampler(omniglot, 5, 1, 5, seed=3)
    b = EpisodeSampler(omniglot, 5, 1, 5, seed=3)
    first_a, first_b = a.sample(4), b.sample(4)
    assert torch.equal(first_a.support, first_b.support) and torch.equal(first_a.classes, first_b.classes)
    second_a = a.sample(4)  # the stream moves on
    assert not torch.equal(second_a.classes, first_a.classes)
    assert torch.equal(second_a.query, b.sample(4).query)
    other = EpisodeSampler(omniglot, 5, 1, 5, seed=4).sample(4)
    assert not torch.equal(other.classes, first_a.classes)


def test_classes_are_drawn_uniformly():
    # 4000 tasks of 5 of 20 classes: each class appears 1000 times in expectation, sd sqrt(4000 * .25 * .75) = 27.
    ds = toy([3] * 20)
    ep = EpisodeSampler(ds, 5, 1, 1, seed=0).sample_index(4000)
    freq = torch.bincount(ep.classes.flatten(), minlength=20)
    assert int(freq.sum()) == 20000 and int((freq - 1000).abs().max()) < 6 * 27
    # Drawing slots are uniform too: each of the 3 drawings of a class is the support one a third of the time.
    slot = ep.support[:, 0] - 3 * ep.classes[:, 0]
    share = torch.bincount(slot, minlength=3).double() / 4000
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=6 * (2 / 9 / 4000) ** 0.5)


def test_fixed_episodes_are_reproducible_and_batched(omniglot):
    f1 = fixed_episodes(omniglot, 5, 1, 3, count=25, seed=7)
    f2 = fixed_episodes(omniglot, 5, 1, 3, count=25, seed=7)
    assert len(f1) == 25 and torch.equal(f1.index.support, f2.index.support)
    parts = list(f1.batches(10))
    assert [p.num_tasks for p in parts] == [10, 10, 5]
    whole = f1.all()
    assert torch.equal(torch.cat([p.query for p in parts]), whole.query)
    assert torch.equal(torch.cat([p.classes for p in parts]), whole.classes)
    check_tasks_real = omniglot.labels[f1.index.support]
    assert torch.equal(check_tasks_real, torch.gather(whole.classes, 1, whole.support_labels))


# --------------------------------------------------------------------------------------------------- splits
@FAST
@given(n_classes=st.integers(3, 300), seed=st.integers(0, 2**31 - 1),
       fr=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(1, 10)))
def test_split_is_a_disjoint_cover_with_the_asked_sizes(n_classes, seed, fr):
    total = sum(fr)
    fractions = [f / total for f in fr]
    fractions[2] = 1.0 - fractions[0] - fractions[1]
    split = split_classes(n_classes, fractions, seed)
    ids = torch.cat(list(split))
    assert torch.equal(ids.sort().values, torch.arange(n_classes))  # disjoint and covering
    assert len(split.train) == int(fractions[0] * n_classes) and len(split.val) == int(fractions[1] * n_classes)
    again = split_classes(n_classes, fractions, seed)
    assert all(torch.equal(a, b) for a, b in zip(split, again))


def test_split_keeps_rotations_of_a_character_together_and_depends_on_seed():
    rot = load_omniglot(DATA, rotations=True)
    split = split_classes(rot, (0.6, 0.2, 0.2), seed=1)
    assert [len(s) for s in split] == [4 * 145, 4 * 48, 4 * 49]
    for part in split:
        names = [rot.classes[i] for i in part.tolist()]
        assert all(names.count(nm) == 4 for nm in set(names))
    parts = [set(rot.classes[i] for i in p.tolist()) for p in split]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    other = split_classes(rot, (0.6, 0.2, 0.2), seed=2)
    assert not torch.equal(split.train, other.train)
    counts = split_classes(rot, (200, 20, 22), seed=1)
    assert [len(s) for s in counts] == [800, 80, 88]


def test_sampler_restricted_to_a_split_never_leaves_it(omniglot):
    split = split_classes(omniglot, (0.5, 0.25, 0.25), seed=0)
    ep = EpisodeSampler(omniglot, 5, 1, 2, seed=0, classes=split.test).sample_index(200)
    assert set(ep.classes.flatten().tolist()) <= set(split.test.tolist())


def test_bad_arguments_raise(omniglot):
    with pytest.raises(InvalidArgumentError, match="n_way"):
        EpisodeSampler(omniglot, 300, 1, 1, seed=0)
    with pytest.raises(InvalidArgumentError, match="k_shot"):
        EpisodeSampler(omniglot, 5, 15, 10, seed=0)
    with pytest.raises(InvalidArgumentError, match="sum"):
        split_classes(omniglot, (0.5, 0.5, 0.5))
    with pytest.raises(InvalidArgumentError, match="sum"):
        split_classes(omniglot, (100, 100, 100))
    with pytest.raises(InvalidArgumentError, match="count"):
        fixed_episodes(omniglot, 5, 1, 1, count=0)
