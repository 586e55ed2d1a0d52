#!/usr/bin/env bash
# Times convtheory's meta_gradient(method="maml") beside hand-written torch.func code, eager and under
# torch.compile, in one run of the project's side-by-side harness (../shared/bench/peer_maml.py), which checks every
# gradient against a float64-verified reference before timing and interleaves rounds.
# Peers (higher, TorchOpt, learn2learn, Betty) and JAX join when their venv exists (../shared/bench/setup_peers.sh).
#   benchmarks/peer_maml.sh           full: workloads A (N = 1, 5, 10) and B, 20 rounds, 1 thread
#   benchmarks/peer_maml.sh --quick   workload A at N = 5, 5 rounds
# Writes benchmarks/results/peer_maml_convtheory.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-../shared/bench/peer_maml.py}
PY=${PY:-.venv/bin/python}
[ -f "$HARNESS" ] || { echo "peer harness not found at $HARNESS (set HARNESS=...)" >&2; exit 2; }
IMPLS="func-vmap+ag func-compile convtheory"
if [ -x "$HOME/.cache/peers-venv/bin/python" ] && [ "${WITH_PEERS:-0}" = 1 ]; then
  PY="$HOME/.cache/peers-venv/bin/python"; IMPLS="$IMPLS jax-jit torchopt-meta higher"
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH
fi
mkdir -p benchmarks/results
if [ "${1:-}" = "--quick" ]; then
  ARGS=(--workloads A --steps 5 --reps 5)
else
  ARGS=(--workloads A B --steps 1 5 10 --reps 20)
fi
# shellcheck disable=SC2086
"$PY" "$HARNESS" "${ARGS[@]}" --impls $IMPLS --threads 1 --no-memory \
  --json benchmarks/results/peer_maml_convtheory.json | tee benchmarks/results/peer_maml_convtheory.md
