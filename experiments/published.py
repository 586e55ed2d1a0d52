"""Published few-shot numbers as data: Omniglot 5/20-way 1/5-shot, miniImageNet 5-way 1/5-shot, and the error rates
on Lake et al.'s 20 official one-shot runs.

Every number is copied from one of three places and says which (column ``source``, with the tag the place gives it;
column ``printed`` holds the number exactly as printed there, e.g. "98.90 ± 0.10"):

- ``seed 001``: /work/shared/seeds/001_8100c508ad46cf61.txt, the slide deck's tables "Benchmarks: MAML on Omniglot"
  (Finn et al. 2017, Table 1), "MAML/FOMAML on MiniImagenet", "MAML/FOMAML/Reptile on Omniglot" and "... on
  MiniImagenet" (Nichol et al. 2018);
- ``THEORY.md §15``: /work/shared/theory/THEORY.md, "Headline numbers to reproduce", with its tag in brackets
  ([paper via slides], [uncertain], [code: learn2learn README], ...);
- ``runs.py``: the docstring of :mod:`convtheory.fewshot.runs` (Lake, Salakhutdinov and Tenenbaum, Science 2015),
  for the 20-run error rates.

A number both sources give is one row whose ``source`` names both. Nothing here is computed; ``ci`` is the ± the
source prints (``ci_kind`` says what it is where a source says so; otherwise "± as printed, kind not stated"), NaN
where the source prints none. ``value`` is a percentage: accuracy for ``metric == "accuracy"``, mean error over the
20 runs for ``metric == "error"``. ``family`` names the convtheory method the row is the published counterpart of
(``convtheory.fewshot.train.METHODS``), or "" for baselines we do not train.

Not in this table (out of scope): CIFAR-FS and FC100 rows of learn2learn's README, the ESJ time-to-accuracy numbers
(seed 000), ANIL's speed-up factors.
"""

from __future__ import annotations

import math

import pandas as pd

COLUMNS = ("paper", "method", "family", "dataset", "ways", "shots", "metric", "value", "ci", "ci_kind", "protocol",
           "source", "printed")

S001_OMNI_MAML = "seed 001 (001_8100c508ad46cf61.txt), table 'Benchmarks: MAML on Omniglot'"
S001_OMNI_REPTILE = "seed 001 (001_8100c508ad46cf61.txt), table 'MAML/FOMAML/Reptile on Omniglot'"
S001_MINI_MAML = "seed 001 (001_8100c508ad46cf61.txt), table 'MAML/FOMAML on MiniImagenet'"
S001_MINI_REPTILE = "seed 001 (001_8100c508ad46cf61.txt), table 'MAML/FOMAML/Reptile on MiniImagenet'"
T15 = "THEORY.md §15"
RUNS_PY = "convtheory/fewshot/runs.py docstring (Lake, Salakhutdinov, Tenenbaum, Science 2015)"

CI_MAML = "95% CI, 1.96 sd/sqrt(600) over 600 test tasks (MAML's test(), THEORY.md §2)"
CI_UNSTATED = "± as printed, kind not stated"
NONE = "none printed"

P_MAML = ("600 random test episodes of held-out classes; transductive (batch-norm batch statistics; '+ Transduction' "
          "in seed 001)")
P_TRANS = "random test episodes; transductive"
P_NONTRANS = "random test episodes; non-transductive"
P_EPISODES = "random test episodes; transduction not stated in the source"
P_RUNS = "20 official within-alphabet one-shot runs (Lake et al. 2015): mean error over the runs"

NAN = math.nan

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def _rows(paper, method, family, dataset, settings, values, cis, ci_kind, protocol, source, metric="accuracy"):
    """One row per setting; ``values`` and ``cis`` are the numbers as the source prints them (text, so "98.90"
    keeps its zero; None where the source prints none)."""
    out = []
    for (w, k), v, c in zip(settings, values, cis):
        if v is None:  # the source prints "-" / "_" for this setting
            continue
        out.append({"paper": paper, "method": method, "family": family, "dataset": dataset, "ways": w, "shots": k,
                    "metric": metric, "value": float(v), "ci": NAN if c is None else float(c),
                    "ci_kind": NONE if c is None else ci_kind, "protocol": protocol, "source": source,
                    "printed": v if c is None else f"{v} ± {c}"})
    return out


def _omniglot() -> list[dict]:
    r = []
    # Finn et al. 2017, Table 1 (seed 001 "Benchmarks: MAML on Omniglot"); MAML and FO-MAML also in the Reptile table
    # as "+ Transduction" and in THEORY.md §15.
    r += _rows("Finn et al. 2017 (MAML)", "MAML", "maml", "omniglot", SETTINGS, ("98.7", "99.9", "95.8", "98.9"),
               ("0.4", "0.1", "0.3", "0.2"), CI_MAML, P_MAML,
               f"{S001_OMNI_MAML}; {S001_OMNI_REPTILE} ('MAML + Transduction'); {T15} [paper via iMAML table in "
               f"slides]")
    r += _rows("Finn et al. 2017 (MAML)", "FO-MAML", "fomaml", "omniglot", SETTINGS, ("98.3", "99.2", "89.4", "97.9"),
               ("0.5", "0.2", "0.5", "0.1"), CI_MAML, P_MAML,
               f"{S001_OMNI_REPTILE} ('FOMAML + Transduction'); {T15} [paper via slides]")
    r += _rows("Finn et al. 2017 (MAML)", "MAML, no conv", "", "omniglot", SETTINGS[:2], ("89.7", "97.5"),
               ("1.1", "0.6"), CI_MAML, P_EPISODES, f"{S001_OMNI_MAML} ('MAML, no conv (ours)'); {T15} [seed 001]")
    r += _rows("Finn et al. 2017, Table 1 (quoted)", "MANN, no conv", "", "omniglot", SETTINGS[:2], ("82.8", "94.9"),
               (None, None), CI_UNSTATED, P_EPISODES, f"{S001_OMNI_MAML}; {T15} [seed 001]")
    for name, vals in (("Siamese nets", ("97.3", "98.4", "88.2", "97.0")),
                       ("matching nets", ("98.1", "98.9", "93.8", "98.5")),
                       ("neural statistician", ("98.1", "99.5", "93.2", "98.1")),
                       ("memory mod.", ("98.4", "99.6", "95.0", "98.6"))):
        r += _rows("Finn et al. 2017, Table 1 (quoted)", name, "", "omniglot", SETTINGS, vals, (None,) * 4,
                   CI_UNSTATED, P_EPISODES, S001_OMNI_MAML)
    # Nichol et al. 2018 (Reptile)
    r += _rows("Nichol et al. 2018 (Reptile)", "Reptile", "reptile", "omniglot", SETTINGS,
               ("95.39", "98.90", "88.14", "96.65"), ("0.09", "0.10", "0.15", "0.33"), CI_UNSTATED, P_NONTRANS,
               S001_OMNI_REPTILE)
    r += _rows("Nichol et al. 2018 (Reptile)", "Reptile + Transduction", "reptile", "omniglot", SETTINGS,
               ("97.68", "99.48", "89.43", "97.12"), ("0.04", "0.06", "0.14", "0.32"), CI_UNSTATED, P_TRANS,
               f"{S001_OMNI_REPTILE}; {T15} [paper via slides]")
    # Rajeswaran et al. 2019 (iMAML), Table 2
    r += _rows("Rajeswaran et al. 2019 (iMAML)", "iMAML-GD", "imaml", "omniglot", SETTINGS,
               ("99.16", "99.67", "94.46", "98.69"), ("0.35", "0.12", "0.42", "0.1"), CI_UNSTATED,
               "random test episodes; lambda = 2, 5 CG steps; transduction not stated", f"{T15} [paper via slides]")
    r += _rows("Rajeswaran et al. 2019 (iMAML)", "iMAML-HF", "imaml", "omniglot", SETTINGS,
               ("99.50", "99.74", "96.18", "99.14"), ("0.26", "0.11", "0.36", "0.1"), CI_UNSTATED,
               "random test episodes; lambda = 2, 5 CG steps; transduction not stated", f"{T15} [paper via slides]")
    # Raghu et al. 2020 (ANIL): MAML vs ANIL, 20-way only
    anil_src = f"{T15} [uncertain]"
    anil_ci = "± as printed, kind not stated (ANIL reports 3 seeds)"
    r += _rows("Raghu et al. 2020 (ANIL)", "MAML (ANIL paper)", "maml", "omniglot", SETTINGS[2:], ("93.7", "96.4"),
               ("0.7", "0.1"), anil_ci, P_EPISODES, anil_src)
    r += _rows("Raghu et al. 2020 (ANIL)", "ANIL", "anil", "omniglot", SETTINGS[2:], ("96.2", "98.0"), ("0.5", "0.3"),
               anil_ci, P_EPISODES, anil_src)
    # learn2learn's reproduction of MAML (CNN and FC), with the originals it lists
    r += _rows("learn2learn README (reproduction)", "MAML (learn2learn)", "maml", "omniglot", ((5, 1),), ("99.1",),
               (None,), CI_UNSTATED, "reproduction; original 98.7", f"{T15} [code: learn2learn README]")
    r += _rows("learn2learn README (reproduction)", "MAML, FC (learn2learn)", "", "omniglot", ((5, 1),), ("88.9",),
               (None,), CI_UNSTATED, "reproduction; original 89.7", f"{T15} [code: learn2learn README]")
    return r


def _miniimagenet() -> list[dict]:
    r = []
    s5 = ((5, 1), (5, 5))
    r += _rows("Finn et al. 2017 (MAML)", "MAML", "maml", "miniimagenet", s5, ("48.70", "63.11"), ("1.84", "0.92"),
               CI_MAML, P_MAML, f"{S001_MINI_MAML}; {S001_MINI_REPTILE} ('MAML + Transduction'); {T15} [seed 001]")
    r += _rows("Finn et al. 2017 (MAML)", "FO-MAML", "fomaml", "miniimagenet", s5, ("48.07", "63.15"), ("1.75", "0.91"),
               CI_MAML, P_MAML, f"{S001_MINI_MAML}; {S001_MINI_REPTILE} ('FOMAML + Transduction'); {T15} [seed 001]")
    for name, vals, cis in (("fine-tuning baseline", ("28.86", "49.79"), ("0.54", "0.79")),
                            ("nearest neighbour baseline", ("41.08", "51.04"), ("0.70", "0.65")),
                            ("matching nets", ("43.56", "55.31"), ("0.84", "0.73")),
                            ("meta-learner LSTM", ("43.44", "60.60"), ("0.77", "0.71"))):
        r += _rows("Finn et al. 2017, Table 2 (quoted)", name, "", "miniimagenet", s5, vals, cis, CI_UNSTATED,
                   P_EPISODES, f"{S001_MINI_MAML}; {T15} [seed 001]")
    r += _rows("Nichol et al. 2018 (Reptile)", "Reptile", "reptile", "miniimagenet", s5, ("47.07", "62.74"),
               ("0.26", "0.37"), CI_UNSTATED, P_NONTRANS, f"{S001_MINI_REPTILE}; {T15} [seed 001]")
    r += _rows("Nichol et al. 2018 (Reptile)", "Reptile + Transduction", "reptile", "miniimagenet", s5,
               ("49.97", "65.99"), ("0.32", "0.58"), CI_UNSTATED, P_TRANS, f"{S001_MINI_REPTILE}; {T15} [seed 001]")
    r += _rows("Nichol et al. 2018 (Reptile), arXiv v1", "Reptile + Transduction (v1)", "reptile", "miniimagenet",
               s5, ("48.21", "66.00"), (None, None), CI_UNSTATED, P_TRANS, f"{T15} [secondary: HN]")
    r += _rows("Rajeswaran et al. 2019 (iMAML)", "iMAML-GD", "imaml", "miniimagenet", ((5, 1),), ("48.96",), ("1.84",),
               CI_UNSTATED, P_EPISODES, f"{T15} [uncertain]")
    r += _rows("Rajeswaran et al. 2019 (iMAML)", "iMAML-HF", "imaml", "miniimagenet", ((5, 1),), ("49.30",), ("1.88",),
               CI_UNSTATED, P_EPISODES, f"{T15} [uncertain]")
    anil_ci = "± as printed, kind not stated (ANIL reports 3 seeds)"
    r += _rows("Raghu et al. 2020 (ANIL)", "MAML (ANIL paper)", "maml", "miniimagenet", s5, ("46.9", "63.1"),
               ("0.2", "0.4"), anil_ci, P_EPISODES, f"{T15} [uncertain]")
    r += _rows("Raghu et al. 2020 (ANIL)", "ANIL", "anil", "miniimagenet", s5, ("46.7", "61.5"), ("0.4", "0.5"),
               anil_ci, P_EPISODES, f"{T15} [uncertain]")
    l2l = f"{T15} [code: learn2learn README]"
    r += _rows("learn2learn README (reproduction)", "MAML (learn2learn)", "maml", "miniimagenet", s5, ("48.3", "65.4"),
               (None, None), CI_UNSTATED, "reproduction; originals 48.7 / 63.1", l2l)
    r += _rows("learn2learn README (reproduction)", "ProtoNet (learn2learn)", "protonet", "miniimagenet", s5,
               ("49.1", "66.5"), (None, None), CI_UNSTATED, "reproduction; originals 49.4 / 68.2", l2l)
    r += _rows("ProtoNet original (as listed by learn2learn README)", "ProtoNet", "protonet", "miniimagenet", s5,
               ("49.4", "68.2"), (None, None), CI_UNSTATED, P_EPISODES, f"{l2l}, column 'orig'")
    return r


def _runs() -> list[dict]:
    """Mean error (%) on the 20 official within-alphabet runs, as runs.py's docstring quotes Lake et al. (2015)."""
    r = []
    for method, family, v in (("people", "", "4.5"), ("BPL", "", "3.3"),
                              ("Siamese convnet", "", "8.0"), ("MHD nearest neighbour", "mhd", "38.8")):
        r += _rows("Lake et al. 2015", method, family, "omniglot", ((20, 1),), (v,), (None,), CI_UNSTATED, P_RUNS,
                   RUNS_PY, metric="error")
    return r


def published_table() -> pd.DataFrame:
    """Every published row (accuracy on episodes and error on the 20 official runs) as one tidy table."""
    df = pd.DataFrame(_omniglot() + _miniimagenet() + _runs(), columns=list(COLUMNS))
    return df.astype({"ways": int, "shots": int, "value": float, "ci": float})


def accuracy_rows() -> pd.DataFrame:
    """The episode-accuracy rows (``metric == "accuracy"``)."""
    t = published_table()
    return t[t["metric"] == "accuracy"].reset_index(drop=True)


def runs_rows() -> pd.DataFrame:
    """The 20-official-run error rows (``metric == "error"``)."""
    t = published_table()
    return t[t["metric"] == "error"].reset_index(drop=True)


PUBLISHED = published_table()
