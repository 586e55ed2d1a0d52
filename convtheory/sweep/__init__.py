"""Sweeps: grids of runs as data, a resumable atomic results store, and serial / local-pool / Dask executors."""

from .execute import EXECUTORS, SweepResult, execute_one, run_sweep
from .spec import RunSpec, grid, resolve
from .store import CorruptResultWarning, ResultStore

__all__ = ["EXECUTORS", "CorruptResultWarning", "ResultStore", "RunSpec", "SweepResult", "execute_one", "grid",
           "resolve", "run_sweep"]
