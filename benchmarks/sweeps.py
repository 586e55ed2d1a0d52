"""Sweep-layer performance (performance target 4): overhead per run, scaling with local workers, Dask against the
local pool, and compiled against eager meta-gradients in a sweep of many short runs that share a shape.

Workload: the first ``--runs`` RunSpecs of an experiment's quick profile (default ``maml_steps``: MAML solver runs
on quadratic tasks), so the numbers describe the sweeps the README's main job makes.

1. ``overhead``: every run called directly (``resolve(spec.fn)(params, seed)``) against the same runs through
   ``run_sweep(executor="serial")`` into a fresh store (hashing, atomic checksummed writes, loading the table);
   after a warm-up pass, the two alternate over ``--rounds`` rounds; overhead = sweep / direct - 1.
2. ``workers``: ``run_sweep(executor="local")`` with 1 and with 2 worker processes, fresh stores; throughput ratio.
3. ``dask``: a ``distributed.LocalCluster`` of 2 worker processes against the local pool of 2; time ratio (the
   cluster's start-up is timed separately and reported, since a user starts it once per session).
4. ``compile``: the serial sweep with the meta-gradient compile policy ``"auto"`` (the default: eager first call,
   compiled from the second call of a configuration) against ``"never"`` (eager only); each in a fresh process.

Output: ``<out>/sweeps.{json,md}``.   python benchmarks/sweeps.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def environment() -> dict:
    import torch

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
           "torch": torch.__version__, "cpus": os.cpu_count()}
    try:
        env["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
        env["load_average"] = os.getloadavg()
    except (OSError, StopIteration):
        pass
    return env


def workload(experiment: str, runs: int) -> list:
    from experiments import registry

    return registry()[experiment].specs("quick")[:runs]


def _sweep_seconds(specs, executor: str, workers: int, **kw) -> float:
    from convtheory.sweep import run_sweep

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = run_sweep(specs, d, executor=executor, workers=workers, progress=False, **kw)
        dt = time.perf_counter() - t0
    if res.failed or len(res.ran) != len({s.key() for s in specs}):
        raise SystemExit(f"sweep on {executor} with {workers} worker(s) did not run every spec: {res.summary()}")
    return dt


def overhead(specs, rounds: int) -> dict:
    import torch

    from convtheory.sweep import resolve

    torch.set_num_threads(1)

    def direct() -> float:
        t0 = time.perf_counter()
        for s in specs:
            resolve(s.fn)(dict(s.params), s.seed)
        return time.perf_counter() - t0

    direct()  # warm-up: imports, compiled functions
    d, w = [], []
    for _ in range(rounds):
        d.append(direct())
        w.append(_sweep_seconds(specs, "serial", 1))
    dm, wm = statistics.median(d), statistics.median(w)
    return {"direct_s": dm, "sweep_s": wm, "overhead": wm / dm - 1, "runs": len(specs),
            "per_run_overhead_ms": 1e3 * (wm - dm) / len(specs)}


def workers_scaling(specs) -> dict:
    one = _sweep_seconds(specs, "local", 1)
    two = _sweep_seconds(specs, "local", 2)
    return {"local_1_worker_s": one, "local_2_workers_s": two, "throughput_ratio": one / two}


def dask_vs_local(specs) -> dict:
    from distributed import Client, LocalCluster

    local = _sweep_seconds(specs, "local", 2)
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    startup = time.perf_counter() - t0
    try:
        dask = _sweep_seconds(specs, "dask", 2, address=cluster.scheduler_address)
    finally:
        client.close()
        cluster.close()
    return {"local_2_workers_s": local, "dask_2_workers_s": dask, "dask_over_local": dask / local,
            "cluster_startup_s": startup}


def compile_policy(experiment: str, runs: int) -> dict:
    """Each policy in a fresh process (so neither inherits the other's compiled functions)."""
    out = {}
    for policy in ("auto", "never"):
        code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); import benchmarks.sweeps as b; "
                f"s = b.workload({experiment!r}, {runs}); print(b._sweep_seconds(s, 'serial', 1))")
        env = {**os.environ, "CONVTHEORY_COMPILE": policy}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode:
            raise SystemExit(f"compile-policy run ({policy}) failed: {r.stderr[-400:]}")
        out[f"{policy}_s"] = float(r.stdout.strip().splitlines()[-1])
    out["auto_over_never"] = out["auto_s"] / out["never_s"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 runs, 2 rounds")
    ap.add_argument("--experiment", default="maml_steps")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--parts", default="overhead,workers,dask,compile")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    runs = args.runs or (8 if args.quick else 24)
    rounds = args.rounds or (2 if args.quick else 3)
    specs = workload(args.experiment, runs)
    parts = args.parts.split(",")
    result = {"benchmark": "sweeps", "environment": environment(),
              "workload": {"experiment": args.experiment, "profile": "quick", "runs": len(specs), "rounds": rounds}}
    if "overhead" in parts:
        result["overhead"] = overhead(specs, rounds)
    if "workers" in parts:
        result["workers"] = workers_scaling(specs)
    if "dask" in parts:
        result["dask"] = dask_vs_local(specs)
    if "compile" in parts:
        result["compile"] = compile_policy(args.experiment, runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweeps.json").write_text(json.dumps(result, indent=1))
    md = [f"Sweep layer, {len(specs)} runs of `{args.experiment}` (quick profile), {result['environment'].get('cpu', '')}",
          "", "| measure | value | target |", "|---|---|---|"]
    if "overhead" in result:
        o = result["overhead"]
        md.append(f"| sweep-layer overhead (serial sweep / direct calls - 1) | {100 * o['overhead']:.1f}% "
                  f"({o['per_run_overhead_ms']:.1f} ms per run; {o['direct_s']:.2f} s direct) | < 5% |")
    if "workers" in result:
        w = result["workers"]
        md.append(f"| throughput, 2 local workers / 1 | {w['throughput_ratio']:.2f}x ({w['local_1_worker_s']:.1f} s "
                  f"vs {w['local_2_workers_s']:.1f} s) | >= 1.7x |")
    if "dask" in result:
        k = result["dask"]
        md.append(f"| Dask LocalCluster (2) / local pool (2) | {k['dask_over_local']:.2f} ({k['dask_2_workers_s']:.1f} s "
                  f"vs {k['local_2_workers_s']:.1f} s; cluster start {k['cluster_startup_s']:.1f} s) | <= 1.10 |")
    if "compile" in result:
        c = result["compile"]
        md.append(f"| serial sweep, compile policy auto / never | {c['auto_over_never']:.2f} ({c['auto_s']:.1f} s vs "
                  f"{c['never_s']:.1f} s) | choose the faster as default |")
    (out / "sweeps.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
