#!/usr/bin/env bash
# Everything to check on a lent GPU machine, in one call from the repository root:
#   bash benchmarks/gpu_check.sh [PEERS_DIR]
# Steps: machine and versions; the extension built in place with CUDA; spconv (and any other wheel)
# from PEERS_DIR, made by ../shared/tools/gpu-peer-wheels.sh; the real scans from ./.gpudata when
# ../shared/data is absent; the CUDA tests; a profile of one forward (benchmarks/profile_cuda.py);
# benchmarks/bench_models.py on CUDA.
# Every step runs under `timeout` and its log goes to $OUT (else ./gpu_check_out); a failing step
# does not stop the next. The whole run keeps inside GPU_CHECK_BUDGET_S (default 450 s): each step
# gets its own cap, cut so that the steps after it keep a minimum. The summary comes last.
set -u

PEERS_DIR=${1:+$(realpath "$1")}
# Logs stay in ./gpu_check_out; with $OUT (the device tool's folder, which returns at most 8 files)
# they go back as one archive next to the summary.
LOGS=$PWD/gpu_check_out
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
START=$(date +%s)
mkdir -p "$LOGS"
STEPS=$LOGS/steps.tsv
printf 'step\texit\tseconds\tlimit\n' > "$STEPS"
export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1

# Seconds for the next step: its cap, less whatever would eat into the `reserve` seconds kept for
# the steps after it; never under 10.
limit() {
    local cap=$1 reserve=$2 left=$((BUDGET_S - ($(date +%s) - START)))
    local t=$((left - reserve))
    ((t > cap)) && t=$cap
    ((t < 10)) && t=10
    echo "$t"
}

# step NAME LIMIT COMMAND...: runs COMMAND under timeout, logs to $LOGS/NAME.log, records exit and
# time, and shows the log's last STEP_TAIL lines (3).
step() {
    local name=$1 seconds=$2 began rc
    shift 2
    echo "== $name (limit ${seconds}s) $(date +%T)"
    began=$(date +%s)
    timeout -k 10 "$seconds" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - began))" "$seconds" >> "$STEPS"
    ((rc == 124 || rc == 137)) && echo "   timed out after ${seconds}s"
    tail -n "${STEP_TAIL:-3}" "$LOGS/$name.log" | cut -c1-300
    return $rc
}

STEP_TAIL=40 step info 60 bash -c '
    nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 --version
    python3 -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())"
    echo "nvcc: $(command -v nvcc || echo not on PATH) CUDA_HOME=${CUDA_HOME:-unset} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset}"
    ls -d /usr/local/cuda* 2>/dev/null; nproc; free -g | head -2
    git log -1 --oneline 2>/dev/null; ls csrc/cuda 2>/dev/null | tr "\n" " "; echo
    for m in pytest pytest_timeout hypothesis spconv; do python3 -c "import $m" 2>/dev/null && echo "$m: yes" || echo "$m: no"; done'

# torch's cpp_extension builds for the visible GPU's architecture when TORCH_CUDA_ARCH_LIST is unset.
step build "$(limit 240 200)" env MAX_JOBS=16 python3 setup.py build_ext --inplace

STEP_TAIL=10 step ops 30 python3 -c '
import torch, pointengine
from pointengine import _C
print("built with CUDA:", _C.built_with_cuda())
names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pointengine::"))
for key in ("CPU", "CUDA"):
    has = [n.split("::")[1] for n in names if torch._C._dispatch_has_kernel_for_dispatch_key(n, key)]
    print(f"{key} kernels ({len(has)}/{len(names)}):", " ".join(has))
print("without a CUDA kernel:", " ".join(n.split("::")[1] for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")))'

# As the header of ../shared/tools/gpu-peer-wheels.sh says; every .whl of the folder goes in, so
# test-only wheels (hypothesis, sortedcontainers) can travel there too.
if [ -n "$PEERS_DIR" ]; then
    step peers "$(limit 90 180)" bash -c '
        shopt -s nullglob; mkdir -p "$HOME/peers" || exit 1
        for f in "$1"/*.tar.xz; do tar xJf "$f" -C "$HOME/peers" || exit 1; done
        wheels=("$1"/*.whl)
        if ((${#wheels[@]})); then python3 -m pip install -q --no-index --no-deps --target "$HOME/peers" "${wheels[@]}" || exit 1; fi
        PYTHONPATH="$HOME/peers:$PYTHONPATH" python3 -c "import spconv, spconv.pytorch; print(\"spconv\", spconv.__version__)"' _ "$PEERS_DIR"
    # Whatever did install is put on the path (hypothesis may load where spconv does not).
    export PYTHONPATH=$PWD:$HOME/peers
fi

if [ ! -e ../shared/data/semantickitti ] && [ -d .gpudata/semantickitti ]; then
    mkdir -p ../shared/data && ln -s "$PWD/.gpudata/semantickitti" ../shared/data/semantickitti
fi
echo "== data: $(ls ../shared/data/semantickitti/sequences/00/velodyne 2>/dev/null | wc -l) scans under ../shared/data/semantickitti/sequences/00/velodyne"

PYTEST=(python3 -m pytest -v --tb=short -rfE -p no:cacheprovider --continue-on-collection-errors)
# A per-test limit well under the step's, so one stuck test fails alone and the summary still prints.
python3 -c "import pytest_timeout" 2> /dev/null && PYTEST+=(--timeout 60)
python3 -c "import hypothesis" 2> /dev/null || echo "!! hypothesis is not importable: tests/conftest.py needs it (put its wheel and sortedcontainers' in PEERS_DIR)"

step tests_cuda "$(limit 150 110)" "${PYTEST[@]}" -m cuda tests
STEP_TAIL=0 step profile "$(limit 45 140)" python3 benchmarks/profile_cuda.py --config minkunet_cr1.0 --dtype fp16 --batch 1
STEP_TAIL=0 step profile_implicit "$(limit 45 120)" python3 benchmarks/profile_cuda.py --config minkunet_cr1.0 \
    --dtype fp16 --batch 1 --dataflow implicit_gemm

# The benchmark stops starting measurements 40 s before its limit, so it still prints its table.
BENCH_LIMIT=$(limit 220 0)
step bench "$BENCH_LIMIT" python3 benchmarks/bench_models.py --device cuda \
    --configs minkunet_cr1.0 minkunet_cr0.5 --batch 1 8 --dtype fp16 fp32 --runs 30 --warmup 5 --dataflows ${BENCH_DATAFLOWS:-implicit_gemm gather_scatter} \
    --budget-s 5 --deadline-s $((BENCH_LIMIT > 60 ? BENCH_LIMIT - 40 : 20)) --json "$LOGS/bench_models.jsonl"

# pytest's last line, or (when it was killed) counts of the per-test lines of -v.
test_summary() {
    local log=$LOGS/$1.log last
    last=$(grep -E '^=+ .*(passed|failed|error|skipped|deselected|no tests ran).* =+$' "$log" | tail -n 1)
    if [ -n "$last" ]; then
        echo "$1: $last"
    else
        echo "$1: no summary line (killed?): $(grep -c ' PASSED' "$log") passed, $(grep -c ' FAILED' "$log") failed, $(grep -c ' ERROR' "$log") errors so far"
    fi
    grep -E '^(FAILED|ERROR) ' "$log" | head -n 40 | cut -c1-250
}

{
    echo
    echo "# gpu_check summary ($(($(date +%s) - START)) s of ${BUDGET_S} s; logs in $LOGS)"
    echo
    head -n 1 "$LOGS/info.log"
    column -t -s $'\t' "$STEPS" 2>/dev/null || cat "$STEPS"
    echo
    grep -E '^(built with CUDA|without a CUDA kernel)' "$LOGS/ops.log"
    grep -E '^spconv ' "$LOGS/peers.log" 2>/dev/null
    echo
    test_summary tests_cuda
    echo
    if grep -q '^## bench_models results' "$LOGS/bench.log"; then
        sed -n '/^## bench_models results/,$p' "$LOGS/bench.log"
    else
        echo "bench: no table (see steps); its last lines:"
        tail -n 15 "$LOGS/bench.log" | cut -c1-300
    fi
    grep -E '^(spconv not importable|minkunet_.*float32)' "$LOGS/bench.log"
} | tee "$LOGS/summary.md"
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/gpu_check_logs.tgz" -C "$LOGS" . && cp "$LOGS/summary.md" "$LOGS/bench_models.jsonl" "$OUT/" 2>/dev/null
fi
