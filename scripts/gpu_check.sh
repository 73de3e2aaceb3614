#!/usr/bin/env bash
# One check of the CUDA backend on a GPU machine, in about 6 minutes, with no install step:
#
#   OUT=/tmp/gpu-check bash scripts/gpu_check.sh            # everything
#   STAGES="env parity tests" bash scripts/gpu_check.sh      # some stages
#
# Stages: env (GPU, driver, library versions), counts (scripts/cuda_counts.py: launches and copies
# of one ResNet18-CoConv step, nothing run), parity (scripts/gpu_parity.py: real-size GEMMs,
# reductions, dynamic layers, a float64 then a float32 training step of every model against the
# CPU backend),
# tests (the cuda-marked tests on the device), bench (`minicoconv bench --all --device cuda` at
# batch 128 against PyTorch CUDA, strict float32 and PyTorch's default TF32 convolutions), epoch
# (ResNet18-CoConv training on the 50,000-image synthetic stand-in: EPOCH_STEPS steps, or the
# whole epoch when EPOCH_STEPS=0), and on request bisect (the step parity without CuPy's pool, then
# with the tiled GEMM, to tell which part a failure comes from). Everything is written under $OUT (default ./gpu-check).
# It runs from the repository with PYTHONPATH set: nothing is installed.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
STAGES="${STAGES:-env counts parity tests bench epoch}"
EPOCH_STEPS="${EPOCH_STEPS:-60}"
BENCH_CONVS="${BENCH_CONVS:-static coconv condconv dycnn odconv dgc}"
BENCH_REPEATS="${BENCH_REPEATS:-5}"  # PARITY_ARGS and BENCH_ARGS: more options for either
T_CHECKS="${T_CHECKS:-240}" T_BENCH="${T_BENCH:-200}" T_EPOCH="${T_EPOCH:-300}"  # seconds per stage
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
# numba-cuda finds libNVVM through CUDA_HOME when no NVVM wheel is installed
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null; then
    export CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
fi
has() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
stage() { echo; echo "=== $1 ($(date +%T)) ==="; }
status=0

if has env; then
    stage env
    { nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
      echo "CUDA_HOME=${CUDA_HOME:-}"; uname -m; nproc
      "$PY" - <<'EOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0])
for name in ("numpy", "numba", "numba-cuda", "cuda-bindings", "cuda-core", "cupy-cuda13x", "cupy-cuda12x", "torch"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
EOF
    } 2>&1 | tee "$OUT/env.txt"
fi

if has counts; then
    stage counts  # no kernel runs: seconds; the launches and host copies a step asks for
    timeout 120 "$PY" scripts/cuda_counts.py --json "$OUT/counts.json" 2>&1 | tee "$OUT/counts.log"
fi

if has parity || has tests; then
    # parity and the tests use the GPU lightly and the CPU heavily: run them side by side
    if has parity; then
        stage "parity (background)"
        # shellcheck disable=SC2086
        timeout "$T_CHECKS" "$PY" scripts/gpu_parity.py ${PARITY_ARGS:-} --json "$OUT/parity.json" >"$OUT/parity.log" 2>&1 &
        parity_pid=$!
    fi
    if has tests; then
        stage tests
        xdist=""; "$PY" -c "import xdist" 2>/dev/null && xdist="-n 6"
        timeout "$T_CHECKS" "$PY" -m pytest tests/cuda tests/backend/test_cublas_layout.py -p no:cacheprovider $xdist \
            2>&1 | tee "$OUT/tests.log" | tail -25
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    fi
    if has parity; then
        wait "$parity_pid" || status=1
        stage parity; cat "$OUT/parity.log"
    fi
fi

if has bisect; then
    # which part of the backend a step-parity failure comes from: numba's own allocator instead of
    # CuPy's pool, then the tiled GEMM instead of cuBLAS, on the static and CoConv models
    stage "bisect: MINICOCONV_CUDA_POOL=0"
    MINICOCONV_CUDA_POOL=0 timeout "$T_CHECKS" "$PY" scripts/gpu_parity.py --only steps --quick 2>&1 | grep -v Warn
    stage "bisect: --gemm tiled"
    timeout "$T_CHECKS" "$PY" scripts/gpu_parity.py --only steps --quick --gemm tiled 2>&1 | grep -v Warn
fi

if has bench; then
    stage bench
    # shellcheck disable=SC2086
    timeout "$T_BENCH" "$PY" -m minicoconv.cli.main bench --all --device cuda --batch-size 128 \
        --repeats "$BENCH_REPEATS" --warmup 2 \
        --conv-types $BENCH_CONVS ${BENCH_ARGS:-} --no-memory --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

if has epoch; then
    stage "epoch (ResNet18-CoConv, synthetic 50,000 images, batch 128, ${EPOCH_STEPS:-all} steps)"
    steps=(); [ "$EPOCH_STEPS" != 0 ] && steps=(--max-steps "$EPOCH_STEPS" --eval-subset 2000)
    rm -rf "$OUT/epoch-run"
    TIMEFORMAT="wall %R s, user %U s, sys %S s"
    time timeout "$T_EPOCH" "$PY" -m minicoconv.cli.main train --model resnet18 --conv coconv --synthetic \
        --epochs 1 --batch-size 128 --device cuda --no-progress --out "$OUT/epoch-run" "${steps[@]}" \
        >"$OUT/epoch.log" 2>&1 || status=1
    tail -15 "$OUT/epoch.log"
    cp "$OUT/epoch-run/metrics.jsonl" "$OUT/epoch-metrics.jsonl" 2>/dev/null
    rm -rf "$OUT/epoch-run"
fi
echo; echo "gpu_check: done ($(date +%T)), status $status"
exit $status
