#!/usr/bin/env bash
# One prepared GPU check: every GPU number the project needs, in one call of at most ~8 minutes
# on one H200, run from the repository root of a copy of the working tree.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine: results under $OUT
#   bash benchmarks/gpu_check.sh --dry-run --out DIR  # any CPU machine: every stage at tiny sizes (CI runs it)
#
# Stages, most important first (each under its own time limit, cut to what is left of --budget; a failed
# stage is recorded and the next one runs):
#   setup          the project installed without dependencies into $PYTHON (default python3), wheels from
#                  .whl/ first (the device machine cannot download: carry `higher` there), versions, nvidia-smi
#   prewarm        in the background while `tests` runs: each compiled LRWA step, the `fastlrwa train --amp
#                  --compile` run and the kernel benchmark, once each, so that Inductor's and Triton's caches
#                  (in WORK/cache) are warm and the timed stages below compile from cache; compile times kept
#   tests          pytest -m gpu (Triton kernels against float64, CUDA-graph and fp16 LRWA steps, the trainer
#                  on CUDA), all but the C++ export runner
#   kernels        benchmarks/bench_kernels.py, fp32 and bf16, N 4096 and 16384, C 100 and 1000, forward +
#                  backward: Triton against torch eager and torch.compile, % of the device's copy bandwidth
#   lrwa           benchmarks/bench_lrwa_step.py --size paper --amp --objective official: joint, higher, exact
#                  (forward and reverse), fd, first_order, eager then compiled: median step time and
#                  torch.cuda.max_memory_allocated above the joint step (the paper's "about 40 MB")
#   trainer        benchmarks/bench_trainer.py --setup paper: `fastlrwa train` at paper size (ResNet-34 ->
#                  ResNet-18, batch 512, 100 classes), fp32 eager, then --amp --compile: samples/s, peak
#                  memory, the time shares of the generator step, generator forwards, teacher forwards and
#                  student updates
#   lrwa_fp32      the eager LRWA steps again without --amp (memory as the paper measured it: float32)
#   tests_export   the CUDA test of the exported student (CMake build of the C++ runner, AOTInductor)
#   summary        OUT/summary.md, OUT/summary.json, OUT/results.csv, OUT/raw.tar.gz (logs and raw results),
#                  OUT/gpu_check.log; the summary table printed last
#
# Options: --dry-run (CPU, tiny sizes; compiled variants need --with-compile, which costs minutes on a CPU),
# --out DIR (default $OUT, else benchmarks/results/gpu_check), --work DIR (default /tmp/fastlrwa-gpu-check:
# caches and raw results; kept, so a second call on the same machine reuses the caches and its summary
# includes the first call's stages unless --fresh), --budget SECONDS (default 470, 1800 for a dry run:
# the whole check ends within it), --stages LIST (comma-separated groups from the list above; default all).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

DRY_RUN=0
WITH_COMPILE=0
FRESH=0
OUT_DIR=${OUT:-$ROOT/benchmarks/results/gpu_check}
WORK=/tmp/fastlrwa-gpu-check
BUDGET_S=
STAGES=prewarm,tests,kernels,lrwa,trainer,lrwa_fp32,tests_export
PY=${PYTHON:-python3}

usage() { sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --with-compile) WITH_COMPILE=1 ;;
        --fresh) FRESH=1 ;;
        --out) OUT_DIR=$2; shift ;;
        --work) WORK=$2; shift ;;
        --budget) BUDGET_S=$2; shift ;;
        --stages) STAGES=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The stage limits below are sized for the H200; a CPU compiles the same graphs many times slower.
CAP_SCALE=1
if [[ $DRY_RUN == 1 ]]; then
    BUDGET_S=${BUDGET_S:-1800}
    [[ $WITH_COMPILE == 1 ]] && CAP_SCALE=10
else
    BUDGET_S=${BUDGET_S:-470}
fi
STARTED=$(date +%s)
DEADLINE=$((STARTED + BUDGET_S))
RESERVE_S=15     # kept for the summary
MIN_STAGE_S=20   # a stage given less than this is skipped rather than started
mkdir -p "$OUT_DIR" "$WORK/logs"
[[ $FRESH == 1 ]] && rm -rf "${WORK:?}"/{logs,prewarm,tests,kernels,lrwa,trainer,stages.jsonl} && mkdir -p "$WORK/logs"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(cd "$WORK" && pwd)
LOG=$OUT_DIR/gpu_check.log
: > "$LOG"

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# Compile caches shared by the check's processes only (the prewarm fills them for the timed stages).
export FASTLRWA_CACHE=$WORK/cache TORCHINDUCTOR_CACHE_DIR=$WORK/cache/inductor TRITON_CACHE_DIR=$WORK/cache/triton

if [[ $DRY_RUN == 1 ]]; then
    DEVICE=cpu
    LRWA_SIZE=tiny
    TRAINER_TINY=(--tiny --epochs 2 --warmup-iterations 1)
    KERNEL_ARGS=(--cpu-reference --providers torch $([[ $WITH_COMPILE == 1 ]] && echo torch.compile) --rows 64
                 --cols 10 100 --modes forward+backward)
    LRWA_TIMING=(--repeats 1 --warmup 1 --no-memory --threads 1)
    # Tiny tensors: a second thread only adds barrier waits, which on a loaded machine cost far more.
    export OMP_NUM_THREADS=1
    # Every GPU test skips here: one file is enough to check the stage's own command and report.
    GPU_TESTS=(tests/test_kernels.py)
    # Compiling costs minutes on a CPU: a plain dry run runs the compiled configurations' eager counterparts.
    COMPILED_MODE=amp
    [[ $WITH_COMPILE == 1 ]] && COMPILED_MODE=amp+compile
else
    DEVICE=cuda
    LRWA_SIZE=paper
    TRAINER_TINY=()
    KERNEL_ARGS=(--rows 4096 16384 --cols 100 1000 --modes forward+backward)
    LRWA_TIMING=(--repeats 5 --warmup 2)
    GPU_TESTS=(tests)
    COMPILED_MODE=amp+compile
    WITH_COMPILE=1
fi
COMPILED_LRWA=(joint lrwa-exact lrwa-exact-reverse lrwa-fd lrwa-first-order)

say() { echo "$*" | tee -a "$LOG"; }
clock() { echo "$(($(date +%s) - STARTED))s"; }
wanted() { [[ ",$STAGES," == *",$1,"* ]]; }

# CPU seconds (user + system) of this shell's finished children, into CHILDREN_CPU_S. `times` must run in
# this shell itself (in a pipeline or $(...) it would count a subshell's children), so it writes to a file.
children_cpu_s() {
    local file=$WORK/.times.$BASHPID
    times > "$file"
    CHILDREN_CPU_S=$(tail -n 1 "$file" \
        | awk '{ for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); total += 60 * t[1] + t[2] } printf "%d", total }')
}

record() {  # stage status rc seconds limit expected note [cpu_s]: one JSON line in WORK/stages.jsonl
    "$PY" -c 'import json, sys, time
keys = ("stage", "status", "rc", "seconds", "limit_s", "expected", "note", "cpu_s")
record = dict(zip(keys, sys.argv[1:]))
for key in ("rc", "seconds", "limit_s", "cpu_s"):
    record[key] = int(record.get(key, 0))
print(json.dumps({**record, "at": int(time.time())}))' "$@" >> "$WORK/stages.jsonl"
}

# stage NAME CAP_S EXPECTED COMMAND...: run COMMAND under `timeout`, its output in WORK/logs/NAME.log.
stage() {
    local name=$1 cap=$(($2 * CAP_SCALE)) expected=$3
    shift 3
    local left=$((DEADLINE - $(date +%s) - RESERVE_S))
    local limit=$((cap < left ? cap : left))
    if ((limit < MIN_STAGE_S)); then
        record "$name" skipped 0 0 0 "$expected" "not started: ${left}s of the time budget left"
        say "[$(clock)] $name: skipped, out of time budget (${left}s left)"
        return 0
    fi
    say "[$(clock)] $name: started (limit ${limit}s; expected $expected)"
    local start rc status cpu
    start=$(date +%s)
    children_cpu_s
    cpu=$CHILDREN_CPU_S
    timeout -k 15 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
    rc=$?
    children_cpu_s
    cpu=$((CHILDREN_CPU_S - cpu))
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    record "$name" "$status" "$rc" "$(($(date +%s) - start))" "$limit" "$expected" \
        "$([[ $status == ok ]] || tail -n 3 "$WORK/logs/$name.log" | cut -c1-300)" "$cpu"
    say "[$(clock)] $name: $status (rc $rc) after $(($(date +%s) - start))s"
    if [[ $status != ok ]]; then
        tail -n 25 "$WORK/logs/$name.log" | sed 's/^/    /' | tee -a "$LOG"
    fi
}

skip() {  # stage reason
    record "$1" skipped 0 0 0 "" "$2"
    say "[$(clock)] $1: skipped: $2"
}

BACKGROUND=()
stage_in_background() {
    stage "$@" &
    BACKGROUND+=($!)
}

# ----- setup ------------------------------------------------------------------------------------------------
say "fastlrwa GPU check: $( [[ $DRY_RUN == 1 ]] && echo "DRY RUN on the CPU, tiny sizes" || echo "device cuda" ), budget ${BUDGET_S}s, stages $STAGES"
say "work folder $WORK, results in $OUT_DIR"
setup_start=$(date +%s)
children_cpu_s
setup_cpu=$CHILDREN_CPU_S
if compgen -G ".whl/*.whl" > /dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .whl/*.whl > "$WORK/logs/wheels.log" 2>&1; then
        export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
        say "installed from .whl/: $(cd .whl && ls *.whl | tr '\n' ' ')"
    else
        say "the wheels in .whl/ did not install:"; tail -n 5 "$WORK/logs/wheels.log" | tee -a "$LOG"
    fi
fi
if [[ $DRY_RUN == 1 ]]; then
    # Into this environment only as a check that the project builds without isolation or an index.
    install=("$PY" -m pip install --dry-run --no-index --no-deps --no-build-isolation -e .)
else
    install=("$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e .)
fi
if "${install[@]}" > "$WORK/logs/install.log" 2>&1; then
    setup_status=ok
else
    setup_status=failed
    say "installing the project failed:"; tail -n 15 "$WORK/logs/install.log" | tee -a "$LOG"
fi
"$PY" benchmarks/gpu_check_report.py versions --out "$WORK/versions.json" 2>&1 | tee -a "$LOG" || setup_status=failed
if command -v nvidia-smi > /dev/null; then
    nvidia-smi 2>&1 | tee "$WORK/nvidia-smi.txt" | tee -a "$LOG"
else
    say "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('higher') is None)"; then
    HIGHER_NOTE="higher is installed: the authors' step is timed"
else
    HIGHER_NOTE="higher is NOT installed: the authors' higher step is skipped in the LRWA stages (carry its wheel in .whl/, BENCHMARKS.md)"
fi
say "$HIGHER_NOTE"
children_cpu_s
record setup "$setup_status" 0 "$(($(date +%s) - setup_start))" 0 "10-30 s" "$HIGHER_NOTE" \
    "$((CHILDREN_CPU_S - setup_cpu))"

# ----- prewarm (background) and tests ------------------------------------------------------------------------
PREWARM=(prewarm_lrwa_joint prewarm_lrwa_lrwa-exact prewarm_lrwa_lrwa-exact-reverse prewarm_lrwa_lrwa-fd
         prewarm_lrwa_lrwa-first-order prewarm_trainer prewarm_kernels)
if wanted prewarm && [[ $WITH_COMPILE == 0 ]]; then
    for name in "${PREWARM[@]}"; do
        skip "$name" "dry run without --with-compile: nothing is compiled, so there is nothing to warm"
    done
elif wanted prewarm; then
    for variant in "${COMPILED_LRWA[@]}"; do
        stage_in_background "prewarm_lrwa_$variant" 240 "1-3 min: a cold Inductor compile at ResNet-18 size" \
            env TORCHINDUCTOR_COMPILE_THREADS=4 "$PY" benchmarks/bench_lrwa_step.py --device "$DEVICE" \
            --size "$LRWA_SIZE" --objective official --amp --compile-only --variants "$variant+compile" \
            --out "$WORK/prewarm/lrwa-$variant"
    done
    stage_in_background prewarm_trainer 240 "2-4 min: generator step, plain and LRWA steps compiled cold" \
        env TORCHINDUCTOR_COMPILE_THREADS=4 "$PY" benchmarks/bench_trainer.py --setup paper --device "$DEVICE" \
        --modes "$COMPILED_MODE" --train-only "${TRAINER_TINY[@]}" --work "$WORK/prewarm/trainer" \
        --out "$WORK/prewarm/trainer"
    stage_in_background prewarm_kernels 240 "1-2 min: the torch.compile references of 3 losses x 8 shapes" \
        bash -c "for dtype in fp32 bf16; do \"$PY\" benchmarks/bench_kernels.py --dtype \$dtype ${KERNEL_ARGS[*]} \
            --out-dir \"$WORK/prewarm/kernels-\$dtype\" || exit 1; done"
fi
if wanted tests; then
    # -n 0: the GPU tests share one device, so they run one after another in one process.
    stage tests 200 "1-2 min (one CUDA-graph compile of a small LRWA step)" \
        "$PY" -m pytest -m gpu -n 0 -q -rA -p no:cacheprovider --timeout 180 --ignore tests/test_export_runner.py \
        --junitxml "$WORK/tests/junit-tests.xml" "${GPU_TESTS[@]}"
fi
if ((${#BACKGROUND[@]})); then
    say "[$(clock)] waiting for the prewarm stages"
    wait "${BACKGROUND[@]}"
fi

# ----- timed stages, one at a time ---------------------------------------------------------------------------
if wanted kernels; then
    for dtype in fp32 bf16; do
        stage "kernels_$dtype" 90 "20-60 s" "$PY" benchmarks/bench_kernels.py --dtype "$dtype" "${KERNEL_ARGS[@]}" \
            --out-dir "$WORK/kernels/$dtype"
    done
fi
lrwa() {  # stage cap expected out-name arguments...
    local name=$1 cap=$2 expected=$3 out=$4
    shift 4
    stage "$name" "$cap" "$expected" "$PY" benchmarks/bench_lrwa_step.py --device "$DEVICE" --size "$LRWA_SIZE" \
        --objective official --no-counts "${LRWA_TIMING[@]}" --out "$WORK/lrwa/$out" "$@"
}
if wanted lrwa; then
    lrwa lrwa_amp_eager 90 "20-40 s" amp-eager --amp --no-compile
    if [[ $WITH_COMPILE == 1 ]]; then
        lrwa lrwa_amp_compiled 180 "1-2 min from the prewarmed caches (Dynamo still traces each step)" \
            amp-compiled --amp --variants "${COMPILED_LRWA[@]/%/+compile}"
    else
        skip lrwa_amp_compiled "dry run without --with-compile: compiled steps not run (minutes on a CPU)"
    fi
fi
if wanted trainer; then
    stage trainer_fp32 120 "40-80 s" "$PY" benchmarks/bench_trainer.py --setup paper --device "$DEVICE" --modes fp32 \
        "${TRAINER_TINY[@]}" --work "$WORK/trainer/work" --out "$WORK/trainer/fp32"
    [[ $COMPILED_MODE != amp+compile ]] && say "dry run without --with-compile: trainer_amp_compile runs --amp only"
    stage trainer_amp_compile 180 "1-2 min from the prewarmed caches" \
        "$PY" benchmarks/bench_trainer.py --setup paper --device "$DEVICE" --modes "$COMPILED_MODE" \
        "${TRAINER_TINY[@]}" --work "$WORK/trainer/work" --out "$WORK/trainer/amp_compile"
fi
if wanted lrwa_fp32; then
    lrwa lrwa_fp32_eager 90 "20-40 s" fp32-eager --no-compile
fi
if wanted tests_export && [[ $DRY_RUN == 1 ]]; then
    skip tests_export "needs a CUDA device (its only test exports for and runs on the GPU)"
elif wanted tests_export; then
    stage tests_export 180 "2-3 min: CMake build of the C++ runner and AOTInductor compiles" \
        "$PY" -m pytest -m gpu -n 0 -q -rA -p no:cacheprovider --timeout 170 \
        --junitxml "$WORK/tests/junit-tests_export.xml" tests/test_export_runner.py
fi

# ----- summary ---------------------------------------------------------------------------------------------------
say "[$(clock)] summary"
tar -czf "$OUT_DIR/raw.tar.gz" -C "$WORK" --exclude=./cache --exclude=./site --exclude='*.pt' --exclude='*/data' --exclude='./.times.*' \
    --exclude='tb' . 2>> "$LOG"
"$PY" benchmarks/gpu_check_report.py summary --work "$WORK" --out "$OUT_DIR" --dry-run "$DRY_RUN" \
    --elapsed "$(($(date +%s) - STARTED))" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
