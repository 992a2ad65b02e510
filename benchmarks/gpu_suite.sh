#!/usr/bin/env bash
# Every GPU figure of the speed targets, as JSON records and one Markdown table.
#
#   bash benchmarks/gpu_suite.sh OUT [PART ...]
#
# PARTs (default: all of them, in this order): tests, stage2, stage1, sample, dense, largest.
# Needs torch, numpy and tqdm only (not the single-cell stack), with src/ on PYTHONPATH or the
# package installed.
# Each part fits in a few minutes on an H100, so the suite can be run part by part where jobs
# are time-limited. Every command's output goes to OUT/<name>.out, its record to
# OUT/<name>.json and a line to OUT/suite.log; at the end OUT/targets.md holds the targets
# against the records found in OUT (benchmarks/report_targets.py).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # the package need not be installed

out=${1:?usage: bash benchmarks/gpu_suite.sh OUT [tests|stage2|stage1|sample|dense|largest ...]}
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests stage2 stage1 sample dense largest)
mkdir -p "$out"
limit=${SUITE_COMMAND_TIMEOUT:-540}  # seconds per command

run() {  # run NAME COMMAND...: one benchmark, its record written to OUT/NAME.json
  local name=$1
  shift
  echo "$(date -u +%FT%TZ) $name: $*" | tee -a "$out/suite.log"
  timeout "$limit" "$@" --json "$out/$name.json" >"$out/$name.out" 2>&1
  echo "  exit $?" | tee -a "$out/suite.log"
}

train="python benchmarks/bench_train.py --device cuda"
for part in "${parts[@]}"; do
  case $part in
    tests)  # the captured steps against the eager ones, and the other training-stage tests;
      # --noconftest: these need torch only, not the single-cell stack of the other tests
      echo "$(date -u +%FT%TZ) tests" | tee -a "$out/suite.log"
      timeout "$limit" python -m pytest -q -p no:cacheprovider --noconftest \
        tests/test_train_graphs.py tests/test_train_performance.py tests/test_train_loop.py \
        >"$out/tests.out" 2>&1
      echo "  exit $?" | tee -a "$out/suite.log" ;;
    stage2)
      run s2 $train --stage 2 --steps 2000 --warmup 200 --compare-plain
      run s2_graphs $train --stage 2 --steps 2000 --warmup 200 --cuda-graphs
      run s2_bf16 $train --stage 2 --steps 2000 --warmup 200 --precision bf16 --cuda-graphs
      run s2_no_tf32 $train --stage 2 --steps 1000 --warmup 100 --no-tf32 ;;
    stage1)
      run s1 $train --stage 1 --steps 5000 --warmup 500 --compare-plain
      run s1_graphs $train --stage 1 --steps 5000 --warmup 500 --cuda-graphs
      run s1_bf16 $train --stage 1 --steps 5000 --warmup 500 --precision bf16 --cuda-graphs ;;
    sample)
      run sample python benchmarks/bench_sample.py --device cuda \
        --block-sizes 1024 8192 65536 --cells 4000000
      run sample_host python benchmarks/bench_sample.py --device cuda \
        --block-sizes 1024 8192 65536 --cells 4000000 --to-host ;;
    dense)  # the dense masked form at PBMC size needs about 7 GB plus activations
      run dense $train --stage 2 --steps 100 --warmup 10 --dense-reference ;;
    largest)
      run largest $train --largest --tfs 600 --tfs-per-target 25 \
        --largest-targets 10000 20000 40000 80000 --memory-limit-gb 16 --steps 20 --warmup 5 \
        --largest-timeout 120 ;;
    *)
      echo "unknown part: $part" >&2
      exit 2 ;;
  esac
done
python benchmarks/report_targets.py "$out" --json "$out/targets.json" >"$out/targets.md"
cat "$out/targets.md"
