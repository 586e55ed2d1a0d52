"""Run a list of :class:`RunSpec` on an executor, reusing stored results, and load everything as one tidy table.

Executors: ``"serial"`` (in this process; debugging and tiny sweeps), ``"local"`` (a process pool of ``workers``
processes, spawned so no torch state is forked), ``"dask"`` (``distributed``: a scheduler ``address``, or a
``LocalCluster`` of ``workers`` processes when none is given). Workers write each result to the store themselves,
atomically, and return only a summary, so a killed sweep loses at most the runs in flight and a restart recomputes
nothing that finished. A run that raises is reported in the summary (never silently dropped); a run that diverges
is a normal result whose Trace says so.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Iterable

import pandas as pd
from tqdm.auto import tqdm

from ..types import InvalidArgumentError, check_choice
from .spec import RunSpec, resolve
from .store import ResultStore

EXECUTORS = ("serial", "local", "dask")


@dataclass(frozen=True)
class SweepResult:
    """The tidy table of every finished run (spec parameters as columns) and what happened to each run."""

    table: pd.DataFrame
    ran: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    diverged: tuple[str, ...] = ()

    def summary(self) -> str:
        return (f"{len(self.ran)} ran, {len(self.cached)} cached, {len(self.diverged)} diverged, "
                f"{len(self.failed)} failed")


def execute_one(spec_dict: dict[str, Any], root: str, threads: int = 1) -> dict[str, Any]:
    """Compute one run and store it; runs in a worker. Returns a summary, never the data."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    spec = RunSpec(**spec_dict)
    key = spec.key()
    store = ResultStore(root)
    if store.load_record(key) is not None:  # another worker or an earlier sweep finished it
        return {"key": key, "status": "cached"}
    t0 = time.perf_counter()
    try:
        data = resolve(spec.fn)(dict(spec.params), spec.seed)
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"{spec.fn} returned {type(data).__name__}, not a pandas DataFrame")
    except Exception:
        return {"key": key, "status": "failed", "error": traceback.format_exc(limit=3)}
    seconds = time.perf_counter() - t0
    store.save(key, spec.as_dict(), data, {"seconds": seconds, "pid": os.getpid()})
    return {"key": key, "status": "ran", "seconds": seconds}


def _records(specs: list[RunSpec], root: str, executor: str, workers: int, address: str | None, progress: bool,
             threads: int) -> Iterable[dict[str, Any]]:
    dicts = [s.as_dict() for s in specs]
    if executor == "serial":  # runs in this process: the same thread count as a worker, restored afterwards
        import torch

        before = torch.get_num_threads()
        try:
            for d in tqdm(dicts, disable=not progress, desc="runs"):
                yield execute_one(d, root, threads)
        finally:
            torch.set_num_threads(before)
        return
    if executor == "local":
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(execute_one, d, root, threads) for d in dicts]
            for fut in tqdm(as_completed(futures), total=len(futures), disable=not progress, desc="runs"):
                yield fut.result()
        return
    from distributed import Client, LocalCluster, as_completed as dask_completed

    cluster = None
    if address is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = client.map(execute_one, dicts, root=root, threads=threads, pure=False, retries=2)
        by_key = dict(zip([f.key for f in futures], dicts))
        for fut in tqdm(dask_completed(futures), total=len(futures), disable=not progress, desc="runs"):
            try:
                yield fut.result()
            except Exception as exc:  # the worker died more often than retries allow
                spec = RunSpec(**by_key[fut.key])
                yield {"key": spec.key(), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _same(col: pd.Series, value: Any) -> bool:
    """Whether a run's output column holds the spec parameter's value on every row."""
    if isinstance(value, (list, tuple, dict)):
        return all(v == value for v in col)
    try:
        return bool((col == value).all())
    except (TypeError, ValueError):
        return False


def run_sweep(specs: list[RunSpec], root: str | os.PathLike, *, executor: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True, threads: int = 1) -> SweepResult:
    """Compute the runs of ``specs`` that the store at ``root`` lacks, then load all of them as one table.

    The table has the runs' own columns plus ``experiment``, ``seed``, ``run_key`` and one column per parameter
    (``param_<name>`` when the run reports a different value under the parameter's name, which is kept);
    ``diverged`` lists every run (computed now or cached) whose Trace marks a divergence.
    """
    check_choice("executor", executor, EXECUTORS)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise InvalidArgumentError(f"workers = {workers} is invalid; it must be >= 1")
    store = ResultStore(root)
    keys = {s.key(): s for s in specs}  # duplicates collapse: a run is computed once
    missing = [s for k, s in keys.items() if store.load_record(k) is None]
    cached = tuple(k for k in keys if keys[k] not in missing)
    ran, failed, diverged = [], {}, []
    if missing:
        for rec in _records(missing, str(store.root), executor, workers, address, progress, threads):
            if rec["status"] == "ran":
                ran.append(rec["key"])
            elif rec["status"] == "failed":
                failed[rec["key"]] = rec["error"]
            else:
                cached += (rec["key"],)
    frames = []
    for k, s in keys.items():
        rec = store.load_record(k)
        if rec is None:
            continue
        df = rec["data"].copy()
        if "diverged" in df and df["diverged"].any():
            diverged.append(k)
        df["experiment"], df["seed"], df["run_key"] = s.experiment, s.seed, k
        for name, value in s.params.items():
            column = [value] * len(df) if isinstance(value, (list, tuple, dict)) else value
            if name in df.columns and not _same(df[name], value):
                name = f"param_{name}"  # the run reported its own value under this name: keep both
            df[name] = column
        frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return SweepResult(table, tuple(ran), cached, failed, tuple(diverged))
