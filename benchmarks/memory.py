"""Peak memory of one meta-gradient versus the number of inner steps N (performance issue, target 3).

MAML, first-order MAML and iMAML (``meta_gradient``) on the Omniglot Conv-4 backbone
(``convtheory.fewshot.backbones.Conv4``: 1 input channel, 64 filters, stride-2 convolutions, transductive batch
norm, 5-way head), 5-way 1-shot with 5 query images per class, meta-batch 4, 28 x 28 random inputs (random pixels
are enough for memory), inner step 0.4, iMAML lam = 1 and 5 CG steps; eager (``compile="never"``) and compiled
(``compile="always"``).

How memory is measured, and why: each configuration runs in a fresh subprocess (one thread), so the allocator
state and caches of one run cannot pollute another. In the child: build parameters and data, run one warm-up
meta-gradient (for "always" that is the compile), collect garbage, then reset the kernel's resident-set high-water
mark (``VmHWM``, via ``/proc/self/clear_refs``), read the resident set ``VmRSS`` as the baseline, run one
meta-gradient and read ``VmHWM`` again: peak = VmHWM - baseline, the extra resident memory one meta-gradient needs.
Not ``resource.getrusage().ru_maxrss``: it cannot be reset (so it would include the warm-up and, for "always",
inductor's compile) and Linux carries the parent's high-water mark over across fork and exec (see
../shared/bench/README.md); it is still recorded (``ru_maxrss_mb``) for comparison. Not torch.profiler: on CPU it
sees tensor allocations only, not the allocator's resident pages that decide whether a job fits. glibc is told to
serve blocks of 128 KiB and more by mmap and to trim its heap (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``), so memory freed by the warm-up goes back to the system and the measured call has to
fault its working set in again; without that, freed heap pages stay resident and the second call shows ~0.

Expected: MAML keeps every inner step's activations for the second-order backward, so its peak grows linearly in
N; first-order MAML and iMAML differentiate nothing through the inner loop, so theirs stays flat. The fitted slope
(least squares, MB per inner step) per method and mode goes into the JSON, the Markdown and ``memory.png``.

    python benchmarks/memory.py [--quick] [--out benchmarks/results] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common as C  # noqa: E402

METHODS = ("maml", "fomaml", "imaml")
MODES = ("never", "always")
FULL_N = (1, 2, 5, 10, 20, 50, 100)
QUICK_N = (1, 2, 5, 10, 20)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def child(cfg: dict) -> dict:
    """One configuration, in this (fresh) process; returns the measurement."""
    import torch
    import torch.nn.functional as F

    from convtheory.fewshot.backbones import Conv4
    from convtheory.hypergrad import meta_gradient

    torch.set_num_threads(1)
    B, ways, shots, qshots, size = cfg["B"], cfg["ways"], cfg["shots"], cfg["query_shots"], cfg["image_size"]
    net = Conv4(in_channels=1, hidden=cfg["hidden"], n_out=ways, pool="stride")
    params = net.init(0, image_size=size)
    g = torch.Generator().manual_seed(1)
    xs = torch.rand(B, ways * shots, 1, size, size, generator=g)
    xq = torch.rand(B, ways * qshots, 1, size, size, generator=g)
    ys = torch.arange(ways).repeat_interleave(shots).expand(B, -1).contiguous()
    yq = torch.arange(ways).repeat_interleave(qshots).expand(B, -1).contiguous()

    def loss(p, batch):
        x, y = batch
        return F.cross_entropy(net(p, x), y)

    kw = {"lam": cfg["lam"], "cg_steps": cfg["cg_steps"]} if cfg["method"] == "imaml" else {}

    def call():
        mg, _ = meta_gradient(loss, params, (xs, ys), (xq, yq), method=cfg["method"], inner_steps=cfg["N"],
                              inner_lr=cfg["alpha"], compile=cfg["mode"], **kw)
        return mg

    t0 = time.perf_counter()
    call()  # warm-up; for "always" this compiles
    warm_s = time.perf_counter() - t0
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    mg = call()
    call_s = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    finite = all(bool(torch.isfinite(v).all()) for v in mg.values())
    return {"baseline_rss_mb": base, "vmhwm_mb": peak, "peak_mb": peak - base, "warmup_s": warm_s, "call_s": call_s,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "finite": finite,
            "params": sum(v.numel() for v in params.values())}


def measure(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", json.dumps(cfg)]
    env = dict(os.environ, **MALLOC_ENV)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**cfg, "ok": False, "error": f"timed out after {timeout:.0f} s (compile time)" if cfg["mode"] == "always"
                else f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {**cfg, "ok": False, "error": f"exit {proc.returncode}: {tail[:300]}", "wall_s": wall}
    return {**cfg, "ok": True, **json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def fit_slopes(rows: list) -> list:
    """Least-squares line peak_mb = a + slope * N per (method, mode) over the measured N."""
    import numpy as np

    out = []
    for m, mode in dict.fromkeys((r["method"], r["mode"]) for r in rows):
        pts = [(r["N"], r["peak_mb"]) for r in rows if (r["method"], r["mode"]) == (m, mode) and r.get("ok")]
        if len(pts) >= 2:
            Ns, ys = np.array(pts, dtype=float).T
            slope, icpt = np.polyfit(Ns, ys, 1)
            out.append({"method": m, "mode": mode, "slope_mb_per_step": float(slope), "intercept_mb": float(icpt),
                        "points": len(pts), "N_range": [int(Ns.min()), int(Ns.max())]})
        else:
            out.append({"method": m, "mode": mode, "slope_mb_per_step": None, "intercept_mb": None,
                        "points": len(pts), "N_range": None})
    return out


def plot(rows: list, fits: list, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"maml": "C0", "fomaml": "C1", "imaml": "C2", "higher": "C3", "torchopt": "C4"}
    for fit in fits:
        m, mode = fit["method"], fit["mode"]
        pts = sorted((r["N"], r["peak_mb"]) for r in rows if (r["method"], r["mode"]) == (m, mode) and r.get("ok"))
        if not pts:
            continue
        Ns, ys = zip(*pts)
        style = "-o" if mode == "never" else "--s"
        lab = f"{m} ({'eager' if mode == 'never' else 'compiled'})"
        if fit["slope_mb_per_step"] is not None:
            lab += f": {fit['slope_mb_per_step']:.2f} MB/step"
        ax.plot(Ns, ys, style, color=colors.get(m, "k"), label=lab, ms=4)
    ax.set_xlabel("inner steps N")
    ax.set_ylabel("peak extra resident memory of one meta-gradient (MB)")
    ax.set_title(title, fontsize=8, wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(res: dict) -> str:
    f = C.fmt
    st = res["settings"]
    lines = [f"# Peak memory of one meta-gradient vs N ({'--quick' if st['quick'] else 'full'})", "",
             C.md_environment(res["environment"]), "", res["workload"], "", "Measurement: " + res["measurement"], ""]
    Ns = sorted({r["N"] for r in res["rows"]})
    head = ["method", "mode"] + [f"N={n}" for n in Ns] + ["slope MB/step"]
    body = []
    for fit in res["fits"]:
        cells = [fit["method"], "eager" if fit["mode"] == "never" else "compiled"]
        for n in Ns:
            r = next((r for r in res["rows"] if (r["method"], r["mode"], r["N"]) == (fit["method"], fit["mode"], n)),
                     None)
            cells.append("" if r is None else (f(r["peak_mb"], ".1f") if r.get("ok") else "failed"))
        cells.append(f(fit["slope_mb_per_step"], ".2f"))
        body.append(cells)
    lines += ["Peak extra resident MB (VmHWM - baseline) of one meta-gradient:", "", C.md_table(head, body), ""]
    lines.append(C.md_table(["method", "mode", "N", "baseline RSS MB", "call s", "warm-up s"],
                            [[r["method"], r["mode"], r["N"], f(r.get("baseline_rss_mb"), ".0f"),
                              f(r.get("call_s"), ".2f"), f(r.get("warmup_s"), ".1f")] for r in res["rows"]
                             if r.get("ok")]))
    fails = [f"- {r['method']} {r['mode']} N={r['N']}: {r['error']}" for r in res["rows"] if not r.get("ok")]
    missing = fails + [f"- {k}" for k in res["not_run"]]
    lines += ["", "Not measured:"] + (missing or ["- none"])
    lines += ["", "Peers: " + "; ".join(f"{k}: {v}" for k, v in res["peers"].items()) + "."]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N up to 20, eager only")
    p.add_argument("--out", type=pathlib.Path, default=C.DEFAULT_OUT)
    p.add_argument("--jobs", type=int, default=2, help="configurations measured at once (separate processes)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="the N values")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--modes", nargs="+", default=None, choices=list(MODES))
    p.add_argument("--compiled-max-N", type=int, default=5,
                   help="compiled runs only up to this N (compiling the unrolled Conv-4 meta-gradient takes minutes)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per configuration")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return {}
    t0 = time.perf_counter()
    base = {"B": 4, "ways": 5, "shots": 1, "query_shots": 5, "image_size": 28, "hidden": 64, "alpha": 0.4,
            "lam": 1.0, "cg_steps": 5}
    if args.tiny:
        base.update(B=2, hidden=8, image_size=14, query_shots=1)
    Ns = args.steps or ((1, 2) if args.tiny else QUICK_N if args.quick else FULL_N)
    modes = args.modes or (["never"] if (args.quick or args.tiny) else list(MODES))
    timeout = args.timeout or (120.0 if (args.quick or args.tiny) else 900.0)
    not_run = []
    if "always" not in modes:
        not_run.append("compiled (compile=\"always\"): not run in this mode (the first compile of the Conv-4 "
                       "meta-gradient took 176 s at N = 1 on the loaded 2-core machine); run without --quick")
    cfgs = []
    for m in args.methods:
        for mode in modes:
            for N in Ns:
                if mode == "always" and N > args.compiled_max_N:
                    continue
                cfgs.append({**base, "method": m, "mode": mode, "N": int(N)})
    if "always" in modes and any(N > args.compiled_max_N for N in Ns):
        not_run.append(f"compiled runs with N > {args.compiled_max_N} (compile time; --compiled-max-N)")
    C.log(f"{len(cfgs)} configurations, {args.jobs} at a time")
    rows = []
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for r in ex.map(lambda c: measure(c, timeout), cfgs):
            C.log(f"{r['method']} {r['mode']} N={r['N']}: "
                  + (f"{r['peak_mb']:.1f} MB ({r['call_s']:.2f} s)" if r.get("ok") else r["error"]))
            rows.append(r)
    fits = fit_slopes(rows)
    peers = {k: v for k, v in C.optional_packages(["higher", "torchopt"]).items()}
    for k, v in peers.items():
        if "not installed" in v:
            not_run.append(f"{k} curve: {v}")
    res = {
        "environment": C.environment(),
        "settings": {"quick": bool(args.quick or args.tiny), "tiny": args.tiny, "steps": list(Ns), "modes": modes,
                     "methods": args.methods, "jobs": args.jobs, "timeout_s": timeout,
                     "compiled_max_N": args.compiled_max_N, "malloc_env": MALLOC_ENV, **base},
        "workload": (f"Conv-4 (1 channel, {base['hidden']} filters, stride 2, transductive BN), {base['ways']}-way "
                     f"{base['shots']}-shot, {base['query_shots']} query images per class, meta-batch {base['B']}, "
                     f"{base['image_size']}x{base['image_size']} random inputs, float32, alpha = {base['alpha']}, "
                     f"iMAML lam = {base['lam']}, Q = {base['cg_steps']}."),
        "measurement": ("fresh subprocess per configuration; one warm-up call, gc, VmHWM reset via "
                        "/proc/self/clear_refs, peak = VmHWM - VmRSS over one meta-gradient (glibc mmap/trim "
                        "thresholds 128 KiB so freed memory leaves the resident set)."),
        "rows": rows,
        "fits": fits,
        "peers": peers,
        "not_run": not_run,
    }
    res["settings"]["wall_s"] = time.perf_counter() - t0
    C.write_json(args.out / "memory.json", res)
    plot(rows, fits, args.out / "memory.png",
         f"One meta-gradient, Conv-4 ({base['hidden']} filters), {base['ways']}-way {base['shots']}-shot, "
         f"meta-batch {base['B']}, {base['image_size']}x{base['image_size']}; fresh process per point")
    md = markdown(res)
    C.write_text(args.out / "memory.md", md)
    print(md)
    C.log(f"wrote {args.out}/memory.json, .md, .png; wall {res['settings']['wall_s']:.0f} s")
    return res


if __name__ == "__main__":
    main()
