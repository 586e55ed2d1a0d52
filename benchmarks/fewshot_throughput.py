"""Few-shot meta-training throughput: convtheory's vectorised step against a loop over tasks (performance target 5).

One meta-training step of second-order MAML on Omniglot 5-way 1-shot (Conv-4, 64 filters, meta-batch B = 32, N = 5
inner steps, alpha = 0.4, 15 queries per class) is timed two ways on the same episodes:

- ``convtheory``: :func:`convtheory.fewshot.train.make_step` (``meta_gradient`` vmapped over tasks), eager
  (``compile="never"``) and compiled (``"always"``);
- ``loop``: the textbook implementation, a Python loop over the B tasks, each adapting with
  ``torch.autograd.grad(create_graph=True)`` and backpropagating its query loss.

The two meta-gradients are checked equal (float32 tolerance) before anything is timed. Rounds interleave the
variants; the table reports median ms per step and steps (and tasks) per second. ``--device cuda`` times on a GPU
(synchronising after each step) and records the GPU model. Output: ``<out>/fewshot_throughput.{json,md}``.

    python benchmarks/fewshot_throughput.py [--quick] [--device cpu|cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def environment(device: torch.device) -> dict:
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or "",
           "device": str(device)}
    try:
        env["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
        env["load_average"] = os.getloadavg()
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def loop_step(net, params: dict, ep, alpha: float, N: int) -> dict:
    """The meta-gradient by a Python loop over tasks: per task N differentiable GD steps on the support loss,
    the query loss at the adapted parameters, backpropagated to the initial parameters; averaged over tasks."""
    names = list(params)
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    B = ep.support.shape[0]
    for i in range(B):
        fast = dict(params)
        for _ in range(N):
            loss = F.cross_entropy(net(fast, ep.support[i]), ep.support_labels[i])
            grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=True)
            fast = {k: fast[k] - alpha * g for k, g in zip(names, grads)}
        q = F.cross_entropy(net(fast, ep.query[i]), ep.query_labels[i])
        for k, g in zip(names, torch.autograd.grad(q, [params[k] for k in names])):
            total[k] += g / B
    return total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="B = 8, 3 rounds, eager only (compiling the second-order "
                    "Conv-4 step takes minutes on a CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--meta-batch", type=int, default=None)
    ap.add_argument("--root", default=str(ROOT / "data" / "omniglot"))
    args = ap.parse_args(argv)

    from convtheory.fewshot.episodes import EpisodeSampler
    from convtheory.fewshot.train import FewShotConfig, build_backbone, init_params, load_dataset, make_step

    torch.set_num_threads(1) if args.device == "cpu" else None
    device = torch.device(args.device)
    B = args.meta_batch or (8 if args.quick else 32)
    rounds = args.rounds or (3 if args.quick else 10)
    cfg = FewShotConfig(method="maml", ways=5, shots=1, queries=15, meta_batch=B, inner_steps=5, inner_lr=0.4,
                        device=args.device).resolved()
    ds = load_dataset(cfg, args.root)
    sampler = EpisodeSampler(ds, 5, 1, 15, seed=0, device=device)
    net = build_backbone(cfg)
    theta = {k: v.detach() for k, v in init_params(cfg, net, device).items()}

    steps = {"convtheory eager": make_step(replace(cfg, compile="never"), net)}
    if not args.quick:
        steps["convtheory compiled"] = make_step(replace(cfg, compile="always"), net)

    def run_loop(ep):
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        return loop_step(net, p, ep, cfg.inner_lr, cfg.inner_steps)

    variants = {"loop over tasks (autograd)": run_loop,
                **{name: (lambda ep, s=s: s(theta, ep, False)[0]) for name, s in steps.items()}}

    # correctness gate on one batch, then first-call (compile) time
    ep0 = sampler.sample(B)
    ref = run_loop(ep0)
    first, gate = {}, {}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        g = fn(ep0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        first[name] = time.perf_counter() - t0
        # one relative error over all parameters: conv biases before batch norm have gradients ~0 by design
        diff = torch.cat([(g[k] - ref[k]).flatten() for k in ref]).norm()
        err = float(diff / torch.cat([ref[k].flatten() for k in ref]).norm())
        if err > 1e-4:
            raise SystemExit(f"correctness gate: {name} differs from the loop: rel. err {err:.2e} > 1e-4")
        gate[name] = err
    episodes = [sampler.sample(B) for _ in range(rounds)]
    times = {name: [] for name in variants}
    for ep in episodes:  # interleaved rounds
        for name, fn in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(ep)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    loop_ms = 1e3 * statistics.median(times["loop over tasks (autograd)"])
    rows = []
    for name, ts in times.items():
        ms = 1e3 * statistics.median(ts)
        rows.append({"variant": name, "ms_per_step_median": ms, "ms_min": 1e3 * min(ts), "ms_max": 1e3 * max(ts),
                     "steps_per_s": 1e3 / ms, "tasks_per_s": B * 1e3 / ms, "speedup_vs_loop": loop_ms / ms,
                     "first_call_s": first[name], "rel_err_vs_loop": gate[name]})
    result = {"benchmark": "fewshot_throughput", "environment": environment(device),
              "setting": {"dataset": "omniglot (data/omniglot)", "ways": 5, "shots": 1, "queries": 15,
                          "backbone": "conv4-64", "meta_batch": B, "inner_steps": 5, "alpha": 0.4,
                          "rounds": rounds, "dtype": "float32"}, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "" if device.type == "cpu" else f"_{device.type}"
    (out / f"fewshot_throughput{tag}.json").write_text(json.dumps(result, indent=1))
    md = [f"Few-shot MAML meta-training step, Omniglot 5-way 1-shot, Conv-4, B = {B}, N = 5, {rounds} rounds, "
          f"device {result['environment'].get('gpu', device)}",
          "", "| variant | ms/step (median) | min | max | steps/s | tasks/s | speed-up vs loop | first call s |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['ms_per_step_median']:.1f} | {r['ms_min']:.1f} | {r['ms_max']:.1f} | "
           f"{r['steps_per_s']:.2f} | {r['tasks_per_s']:.1f} | {r['speedup_vs_loop']:.2f} | {r['first_call_s']:.1f} |"
           for r in rows]
    (out / f"fewshot_throughput{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
