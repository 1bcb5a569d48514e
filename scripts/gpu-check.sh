#!/usr/bin/env bash
# The CUDA backend checked on a GPU machine, in one command from each side.
#
#   bash scripts/gpu-check.sh           here: builds for Hopper (sm_90) as shared libraries into
#                                       build-gpu (a static build is over what can travel), stages it
#                                       with the libraries it needs into .gpu (shared/tools/gpu-stage;
#                                       at most 64 MiB) and prints the device call to make
#   bash scripts/gpu-check.sh --remote  on the GPU machine, from the repository root beside .gpu,
#                                       each step under its own timeout (about 400 s in all), logs in
#                                       $OUT (else gpu-logs/): the driver and toolkit versions;
#                                       `quarry info` must report CUDA available; quarry_tests (all),
#                                       and not one GPU test may skip (scripts/gpu_skips.py);
#                                       compute-sanitizer (memcheck, racecheck, synccheck) over
#                                       GpuPaths.SanitizerSweep; the lazy-loading tests; the CLI end
#                                       to end on examples/pool.npy with --device cuda; quarry_bench's
#                                       CUDA cases; bench/compare_torch.py. Exits non-zero when any
#                                       step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=.gpu

if [[ ${1:-} != --remote ]]; then
  build=${QUARRY_GPU_BUILD:-build-gpu}
  stager=${QUARRY_GPU_STAGE:-}
  for dir in . .. ../..; do
    [[ -z $stager && -x $dir/shared/tools/gpu-stage ]] && stager=$dir/shared/tools/gpu-stage
  done
  [[ -n $stager ]] || { echo "gpu-check: no shared/tools/gpu-stage; set QUARRY_GPU_STAGE" >&2; exit 1; }
  launchers=()
  command -v ccache >/dev/null &&
    launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 "${launchers[@]}" >/dev/null
  cmake --build "$build" -j "$(nproc)" \
    --target quarry_cli quarry_tests quarry_lazy_cuda_tests quarry_bench
  "$stager" "$build" "$stage"
  # The CUDA plugin is loaded, not linked by the programs: gpu-stage finds it through quarry_bench,
  # which links it for its kernel benchmarks.
  [[ -f $stage/lib/libquarry_cuda.so ]] || { echo "gpu-check: $stage lacks libquarry_cuda.so" >&2; exit 1; }
  # The FAISS plugin is loaded, not linked, by every program: it goes beside libquarry.so with the
  # libraries it needs that gpu-stage did not copy (OpenBLAS and its Fortran runtime).
  cp "$build/libquarry_faiss.so" "$stage/lib/"
  ldd "$build/libquarry_faiss.so" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    case $name in
      linux-vdso* | ld-linux* | libc.* | libm.* | libdl.* | librt.* | libpthread.* | libstdc++* | libgcc_s* | libquarry.*) ;;
      *) [[ -e $stage/lib/$name ]] || cp -L "$path" "$stage/lib/$name" ;;
    esac
  done
  echo "$(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' with local changes')" >"$stage/commit"
  # The toolkit the build used, printed on the GPU machine beside its driver.
  nvcc --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' >"$stage/toolkit" ||
    echo unknown >"$stage/toolkit"
  bytes=$(du -sb "$stage" | cut -f1)
  mib=$(((bytes + (1 << 20) - 1) >> 20))
  if ((bytes > 64 << 20)); then
    echo "gpu-check: $stage is $mib MiB, over the 64 MiB that can travel" >&2
    exit 1
  fi
  echo "gpu-check: $stage holds $mib MiB (at most 64 MiB travel). On the GPU machine:"
  echo "  run(command=\"bash scripts/gpu-check.sh --remote\", carry=[\".gpu\"], timeout_s=450)"
  exit 0
fi

# --- on the GPU machine ---
out=${OUT:-$PWD/gpu-logs}
mkdir -p "$out"
[[ -f $stage/env.sh ]] || { echo "gpu-check: no $stage here; stage it with scripts/gpu-check.sh" >&2; exit 1; }
bin=$stage/bin
# The staged libraries only for quarry's programs: PyTorch must not pick up the staged OpenBLAS.
libs=$(source "$stage/env.sh" && echo "$LD_LIBRARY_PATH")
quarry_env=(env "LD_LIBRARY_PATH=$libs")
failures=0

# step NAME SECONDS COMMAND...: runs COMMAND under a time limit, its output in $out/NAME.log.
step() {
  local name=$1 limit=$2 start=$SECONDS rc=0
  shift 2
  timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
  local note=""
  ((rc == 124 || rc == 137)) && note="  TIMED OUT after ${limit}s"
  printf '%-16s exit %-3d %4d s%s\n' "$name" "$rc" $((SECONDS - start)) "$note" |
    tee -a "$out/summary.txt"
  if ((rc != 0)); then
    failures=$((failures + 1))
    tail -n 40 "$out/$name.log" | sed "s/^/  $name| /"
  fi
  return 0
}

{
  echo "commit: $(cat "$stage/commit" 2>/dev/null || echo unknown)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  echo "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null |
    head -n 1 || echo unknown)$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' |
    sed 's/^/, supports /' || true)"
  echo "toolkit (build): $(cat "$stage/toolkit" 2>/dev/null || echo unknown)"
  echo "cudart (here): $(ls /usr/local/cuda/lib64/libcudart.so.* 2>/dev/null | head -n 1 |
    sed 's/.*libcudart.so.//' || true)"
} | tee "$out/summary.txt"

# `quarry info` must report CUDA available: a driver older than the toolkit, or no device, fails.
step info 10 "${quarry_env[@]}" bash -c '
  "$1" info
  "$1" info | grep -q "^cuda: available" || { echo "gpu-check: CUDA is not available" >&2; exit 1; }
' info "$bin/quarry"
grep -E '^(cuda|gpus|  )' "$out/info.log" | sed 's/^/  info| /' | tee -a "$out/summary.txt" || true

step quarry_tests 130 "${quarry_env[@]}" "$bin/quarry_tests" --gtest_output="xml:$out/quarry_tests.xml"
# The totals, and no GPU test skipped (see the header for how GPU tests are recognised).
grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?[,.]' "$out/quarry_tests.log" |
  sed 's/^/  quarry_tests| /' | tee -a "$out/summary.txt" || true
step gpu_skips 10 python3 scripts/gpu_skips.py "$out/quarry_tests.xml"
sed 's/^/  gpu_skips| /' "$out/gpu_skips.log" | head -n 3 | tee -a "$out/summary.txt"

# compute-sanitizer over one small test that runs every kernel family once.
sanitizer=$(command -v compute-sanitizer ||
  ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1 || true)
for tool in memcheck racecheck synccheck; do
  if [[ -z $sanitizer ]]; then
    step "sanitize_$tool" 5 bash -c 'echo "gpu-check: compute-sanitizer not found" >&2; exit 1'
    continue
  fi
  step "sanitize_$tool" 40 "${quarry_env[@]}" "$sanitizer" --tool "$tool" --error-exitcode 1 \
    "$bin/quarry_tests" --gtest_filter=GpuPaths.SanitizerSweep
done

step lazy_cuda_tests 15 "${quarry_env[@]}" "$bin/quarry_lazy_cuda_tests"
# The example pool selected and scored on the GPU, checked against the CPU backend: the same picks
# and scores within a relative 1e-5, and the JSON names the CUDA backend.
step cli_cuda 20 "${quarry_env[@]}" bash -c '
  set -euo pipefail
  bin=$1 out=$2
  for device in cuda cpu; do
    "$bin/quarry" select examples/pool.npy -k 10 --device $device --output "$out/picks_$device.json"
  done
  "$bin/quarry" score examples/pool.npy --device cuda --output "$out/scores_cuda.npy"
  python3 - "$out" <<\EOF
import json, sys
out = sys.argv[1]
cuda, cpu = (json.load(open(f"{out}/picks_{d}.json")) for d in ("cuda", "cpu"))
print("cuda backend:", cuda["backend"])
print("indices:", cuda["indices"])
assert cuda["backend"].startswith("cuda:"), cuda["backend"]
assert cuda["indices"] == cpu["indices"], (cuda["indices"], cpu["indices"])
for a, b in zip(cuda["scores"], cpu["scores"]):
    assert abs(a - b) <= 1e-5 * abs(b) + 1e-6, (a, b)
EOF
' cli "$bin" "$out"
step quarry_bench 70 "${quarry_env[@]}" "$bin/quarry_bench" \
  --benchmark_filter='BM_(DeviceCopy|Cuda)' --benchmark_min_time=0.1 \
  --benchmark_out="$out/quarry_bench.json" --benchmark_out_format=json
step compare_torch 40 python3 bench/compare_torch.py --quarry-json "$out/quarry_bench.json"

echo "gpu-check: $failures step(s) failed; logs in $out" | tee -a "$out/summary.txt"
((failures == 0))
