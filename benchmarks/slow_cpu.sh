#!/usr/bin/env bash
# Runs a command on this machine slowed to a share of its CPU time: the first command as a slower machine sees it,
# measured instead of projected. A Linux cgroup's CPU quota (root; cgroup v1's `cpu` controller or v2's `cpu.max`).
#
#   bash benchmarks/slow_cpu.sh 0.5 -- python -m ssl_keras.run --preset quick --data-dir ../shared/data/dogs
#
# 0.5: the command's threads together get half a CPU's time in every 10 ms; TensorFlow still sees (and threads over)
# every core. On a 2-core AMD EPYC whose float32 matmul reaches about 200 GFLOP/s, 0.5 measured 46-49 GFLOP/s: the
# slow machine of BENCHMARKS §6 (a 2-core AVX2 EPYC, 46-50). It is not that machine: the cores keep AVX-512 and
# their caches, and the time comes in slices. The script prints the matmul rate seen inside the quota before and
# after the command, and the command's seconds; a run's own speed.json holds the rate it measured.
set -euo pipefail
share="${1:?usage: slow_cpu.sh SHARE_OF_ONE_CPU -- COMMAND...}"
shift
[[ "${1:-}" == "--" ]] && shift
[[ $# -gt 0 ]] || { echo "slow_cpu.sh: no command given" >&2; exit 2; }
period=10000
quota=$(python3 -c "import sys; s = float(sys.argv[1]); assert s > 0, s; print(round(s * $period))" "$share") \
  || { echo "slow_cpu.sh: SHARE must be a number above 0, got '$share'" >&2; exit 2; }
if [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then  # cgroup v1
  group=/sys/fs/cgroup/cpu/ssl_keras_slow_$$
  mkdir "$group"
  echo "$period" > "$group/cpu.cfs_period_us"
  echo "$quota" > "$group/cpu.cfs_quota_us"
elif [[ -f /sys/fs/cgroup/cgroup.controllers && -w /sys/fs/cgroup ]]; then  # cgroup v2
  group=/sys/fs/cgroup/ssl_keras_slow_$$
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  mkdir "$group"
  echo "$quota $period" > "$group/cpu.max"
else
  echo "slow_cpu.sh: needs root and a writable cgroup cpu controller (/sys/fs/cgroup)" >&2
  exit 2
fi
trap 'rmdir "$group" 2>/dev/null || true' EXIT
matmul='from ssl_keras import speed; print(f"{speed.run_matmul_gflops():.0f}")'
inside() { (echo "$BASHPID" > "$group/cgroup.procs" && exec "$@"); }
echo "[slow_cpu] share $share of a CPU; float32 matmul before: $(inside python -c "$matmul" 2>/dev/null) GFLOP/s"
start=$(date +%s.%N)
status=0
inside "$@" || status=$?
seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$start" "$(date +%s.%N)")
echo "[slow_cpu] the command took $seconds s (exit $status); float32 matmul after: $(inside python -c "$matmul" 2>/dev/null) GFLOP/s"
exit $status
