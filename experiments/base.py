"""What an experiment is: a grid of runs per profile, and how its tidy results become a figure and tables.

An experiment module defines ``EXPERIMENT = Experiment(...)`` with:

- ``name``: the figure's file name (``figures/<name>.png`` and ``.pdf``); ``order``: its number in the paper;
- ``claim``: one sentence, the prediction it checks, with the paper/theorem or THEORY.md item;
- ``specs(profile)``: the list of :class:`convtheory.sweep.RunSpec` for ``"test"`` (seconds; the test suite),
  ``"quick"`` (minutes on a laptop) or ``"full"``;
- ``plot(table, profile) -> matplotlib Figure``: measurement next to the theoretical prediction (bound curve or
  predicted slope), with seed-to-seed spread shown;
- ``summarize(table) -> DataFrame`` (optional): the numbers the paper quotes, written to ``paper/tables/<name>.tex``
  and ``figures/<name>.csv``; it should hold a ``holds`` column where the experiment has a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

#: "test" is the tiny grid the test suite runs; "quick" the README's main job; "full" the paper's.
PROFILES = ("test", "quick", "full")


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str
    specs: Callable[[str], list]
    plot: Callable[[pd.DataFrame, str], object]
    summarize: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    order: int = 99  # the figure's number in the paper
