#!/usr/bin/env bash
# The one GPU check for a session lent a CUDA machine: the CUDA tests, then the GPU figures
# that docs/benchmarks.md asks for. Results (JSON and logs) go to $OUT (the device tool's
# folder) or ./gpu-results. About 5-8 minutes on an H100/H200.
#   run: bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GENTOOL_HOME=${GENTOOL_HOME:-/tmp/gentool-home}
pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || {
    echo "install failed"; tail "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print(torch.__version__, torch.cuda.is_available())"

# 1. CUDA tests (the default suite deselects them).
timeout 300 python -m pytest -m cuda -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.log" | tail -5

# 2. gentool bench per family: the sample/train asymmetry of MAF and IAF (digits and
#    MNIST shapes) and the translation families at the report's and the reference's sizes.
bench() { local name=$1; shift; timeout 240 gentool bench "$@" --device cuda --json \
    >"$OUT/bench_$name.json" 2>>"$OUT/bench.log" || echo "bench $name failed"; }
bench maf_digits maf
bench iaf_digits iaf
bench maf_mnist maf --image-size 28 --sample-batch 64 --repeats 3
# The same MAFs sampling through CUDA graphs (--cuda-graphs): one replay per solve.
printf 'cuda_graphs = true\n' > "$OUT/graphs.toml"
bench maf_digits_graphs maf --config "$OUT/graphs.toml"
bench maf_mnist_graphs maf --image-size 28 --sample-batch 64 --repeats 3 --config "$OUT/graphs.toml"
bench iaf_digits_graphs iaf --config "$OUT/graphs.toml"   # IAF: the graphed solve is `score`
printf 'cuda_graphs = true\nscale = "softplus"\n' > "$OUT/softplus_graphs.toml"
bench maf_digits_softplus_graphs maf --config "$OUT/softplus_graphs.toml"
grep -h "CUDA graphs off" "$OUT/bench.log" && echo "a graph capture was declined (see bench.log)"
bench iaf_mnist iaf --image-size 28 --sample-batch 64 --repeats 3
bench cyclegan_128 cyclegan --image-size 128 --sample-batch 8
bench pix2pix_256 pix2pix --image-size 256 --sample-batch 8
# The same CycleGAN step in bf16 autocast and in TF32 (train --precision).
bench cyclegan_128_bf16 cyclegan --image-size 128 --sample-batch 8 --precision bf16
bench cyclegan_128_tf32 cyclegan --image-size 128 --sample-batch 8 --precision tf32

# 3. Training steps per second and peak memory of CycleGAN/Pix2Pix (report and reference).
timeout 300 python benchmarks/translation_speed.py "$OUT/translation_speed.json" \
    --device cuda --steps 20 2>&1 | tail -20
ls -l "$OUT"
