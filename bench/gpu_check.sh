#!/usr/bin/env bash
# One-call GPU check for a lent H100/H200: GPU-marked tests, then the benchmark suite.
#
#   bash bench/gpu_check.sh            # writes under $OUT (default: ./gpu_check_out)
#
# Uses only what the GPU image has (torch 2.11, triton 3.6, pytest, pytest-benchmark, h5py,
# einops): no pip install. `kernels/` is importable as `physok_kernels` through a symlink shim, so
# the repository need not be installed (likewise `csrc/` as `physok_csrc`). The image lacks a few of physok's small dependencies
# (the_well, safetensors, heavyball); wheels placed in ./wheels are installed offline into a
# throw-away folder on the path. Prepare them on a machine with a registry and carry the folder:
#
#   pip download --no-deps -d wheels the-well safetensors heavyball \
#       --python-version <the image's, e.g. 3.12> --only-binary=:all: \
#       --platform manylinux2014_x86_64
#
# (`wheels/` is git-ignored: pass it in the device tool's `carry`.)
#
# Prints a short table last and writes gpu_tests.txt, bench.json, summary.md and env.txt
# under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
SHIM="$(mktemp -d)"
ln -s "$PWD/kernels" "$SHIM/physok_kernels"
ln -s "$PWD/csrc" "$SHIM/physok_csrc"
export PYTHONPATH="$PWD:$SHIM${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "wheels/*.whl" > /dev/null; then
    # --no-index: the GPU image reaches no registry; --no-deps: the image has the rest.
    python -m pip install -q --no-index --no-deps --target "$SHIM/site" wheels/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$SHIM/site"
fi
export PYTHONDONTWRITEBYTECODE=1

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. GPU tests (real sizes, bf16 and fp32). ~3 minutes budget. Test modules needing packages
#    the image lacks (the_well, safetensors, heavyball) fail to collect; they hold no GPU tests,
#    so collection continues past them.
# Folders holding GPU-marked tests (their conftests import only torch and physok's models);
# add a folder here when it gains GPU tests.
GPU_TEST_DIRS="tests/kernels tests/ops tests/models tests/data tests/train tests/metrics"
timeout 240 python -m pytest -q -m gpu $GPU_TEST_DIRS -p no:cacheprovider --continue-on-collection-errors \
    -o addopts="-ra --strict-markers" 2>&1 | tail -40 | tee "$OUT/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}

# 2. Benchmarks: each fast path vs its reference, same run. ~4 minutes budget.
timeout 300 python -m pytest -q bench/ --benchmark-only -p no:cacheprovider \
    --continue-on-collection-errors \
    --benchmark-json="$OUT/bench.json" --benchmark-min-rounds=5 --benchmark-max-time=1.0 \
    2>&1 | tail -15
bench_rc=${PIPESTATUS[0]}

python bench/summarise.py --markdown "$OUT/bench.json" > "$OUT/summary.md" 2>&1
echo "== GPU tests rc=$tests_rc, benchmarks rc=$bench_rc =="
python bench/summarise.py "$OUT/bench.json"
rm -rf "$SHIM"
