#!/usr/bin/env bash
# tests/gpu and benchmarks/bench_gpu.py on a GPU machine that has no package index
# (the device tool's H100/H200: CuPy, Triton, NumPy, SciPy, pytest are there; ase and
# threadpoolctl, core dependencies, may not be).
#
# Here, once per machine, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ase==3.29.0 threadpoolctl==3.6.0
# Then on the device, from the repository root, carrying .whl (the tree is copied without
# .git, so pass the commit being measured):
#   GPLODE_COMMIT=<git rev-parse --short HEAD> bash benchmarks/run_on_gpu.sh
# Results and logs are copied to $OUT.
set -euo pipefail
site=/tmp/gplode-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$site" .
export PYTHONPATH="$site" PYTHONUNBUFFERED=1 GPLODE_TEST_GPU=1
out="${OUT:-/tmp/gplode-out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
repo="$PWD"
# from another directory: `python -m` puts the working directory first on sys.path, and the
# source tree's gplode/ (without gplode.kernels, which setuptools maps from kernels/) would
# shadow the installed package
cd /tmp
python3 -c "import gplode, gplode.devices.cuda, gplode.kernels.spread; print('gplode from', gplode.__file__)"
status=0
python3 -m pytest "$repo/tests/gpu" -q -p no:cacheprovider -c "$repo/pyproject.toml" --rootdir "$repo" 2>&1 |
    tee "$out/tests_gpu.log" || status=1
python3 "$repo/benchmarks/bench_gpu.py" 2>&1 | tee "$out/bench_gpu.log" || status=1
cd "$repo"
cp benchmarks/results/gpu-*.json "$out/" 2>/dev/null || true
exit $status
