#!/usr/bin/env bash
# One-call GPU check for a lent H100/H200: GPU-marked tests, then the benchmark suite.
#
#   bash bench/gpu_check.sh            # writes under $OUT (default: ./gpu_check_out)
#
# Uses only what the GPU image has (torch 2.11, triton 3.6, pytest, pytest-benchmark, h5py,
# einops): no pip install. `kernels/` is importable as `physok_kernels` (and `csrc/` as
# `physok_csrc`) through a symlink shim, so the repository need not be installed. The image
# lacks a few of physok's small dependencies (the_well with its pyyaml/fsspec, safetensors,
# heavyball, tqdm); wheels placed in ./wheels are installed offline into a throw-away folder on
# the path. Prepare them on a machine with a registry and carry the folder:
#
#   pip download --no-deps -d wheels the-well safetensors heavyball tqdm pyyaml fsspec \
#       --python-version <the image's, e.g. 3.12> --only-binary=:all: \
#       --platform manylinux2014_x86_64
#
# (`wheels/` is git-ignored: pass it in the device tool's `carry`.) At most ~9.5 minutes (the
# per-folder test limits add to 330 s, usually far less; 240 s of benchmarks), so it fits one
# 10-minute device call.
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

# 1. GPU tests (real sizes, bf16 and fp32), one pytest per folder: a folder whose conftest
#    needs a package the image lacks then fails alone, not the whole session (test modules that
#    fail to collect hold no GPU tests; collection continues past them). 5.5 minutes at most.
#    `timeout -s INT` lets pytest print its summary (and pytest-benchmark write its JSON).
# Folders holding GPU-marked tests, with a time limit each (seconds); add a folder here when it
# gains GPU tests.
GPU_TEST_DIRS="tests/kernels:120 tests/ops:90 tests/models:60 tests/data:30 tests/metrics:30"
: > "$OUT/gpu_tests.txt"
tests_rc=0
for entry in $GPU_TEST_DIRS; do
    dir=${entry%%:*} limit=${entry##*:}
    [ -d "$dir" ] || continue
    echo "== $dir" | tee -a "$OUT/gpu_tests.txt"
    timeout -s INT -k 20 "$limit" python -m pytest -q -m gpu "$dir" -p no:cacheprovider \
        --continue-on-collection-errors -o addopts="-ra --strict-markers" \
        2>&1 | tail -25 | tee -a "$OUT/gpu_tests.txt"
    rc=${PIPESTATUS[0]}
    # 5: no GPU test in that folder on this machine; anything else non-zero is a failure.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then tests_rc=$rc; fi
done

# 2. Benchmarks: each fast path vs its reference, same run. ~4 minutes at most.
timeout -s INT -k 30 240 python -m pytest -q bench/ --benchmark-only -p no:cacheprovider \
    --continue-on-collection-errors \
    --benchmark-json="$OUT/bench.json" --benchmark-min-rounds=5 --benchmark-max-time=1.0 \
    2>&1 | tail -15
bench_rc=${PIPESTATUS[0]}

python bench/summarise.py --markdown "$OUT/bench.json" > "$OUT/summary.md" 2>&1
echo "== GPU tests rc=$tests_rc, benchmarks rc=$bench_rc =="
python bench/summarise.py "$OUT/bench.json"
rm -rf "$SHIM"
