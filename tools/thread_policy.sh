#!/bin/bash
# Usage: tools/thread_policy.sh (from the repository root, after make test has set up .venv); about 90 s.
# steps/s at width 256 depth 4 under thread counts, OpenMP wait policy and a busy core
run() {  # $1 policy, $2 threads
  env ${1:+OMP_WAIT_POLICY=$1} .venv/bin/python -c "
import torch; torch.set_num_threads($2)
from bindbench.bench import bench_mlp
r=bench_mlp(256,4,steps=20); print(f\"{r['steps_per_second']:.1f}\")"
}
for hog in no yes; do
  if [ $hog = yes ]; then python3 -c "while True: pass" & HOG=$!; sleep 1; fi
  for policy in "" PASSIVE; do for t in 1 2; do
    echo "hog=$hog policy=${policy:-default} threads=$t steps/s=$(run "$policy" $t)"
  done; done
  if [ $hog = yes ]; then kill $HOG; fi
done
