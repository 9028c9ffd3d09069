# shellcheck shell=bash disable=SC2154,SC2034
# suite: pool      calls through the embedded API (tests/bench/bench-pool.c) under each event-loop backend: apply_async throughput and the apply round trip (p50/p99), against Python's multiprocessing.Pool (tests/bench/pool_bench.py)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
# map is the map suite's, recycling the recycle suite's.

pool_runs=3
pool_budget=100
if [ "$quick" -eq 1 ]; then
	pool_async_n=20000 pool_rtt_n=5000
else
	pool_async_n=50000 pool_rtt_n=10000
fi

pool_header() {
	echo "== pool: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

pool_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}"
}

# One repetition of every pool measurement; forkpool under each backend, then Python.
pool_rep() {
	local b
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.async" "$bench_pool" apply-async "$pool_async_n"
	done
	run py.async "$python" "$pool_py" apply-async "$pool_async_n"
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.rtt" "$bench_pool" rtt "$pool_rtt_n"
	done
	run py.rtt "$python" "$pool_py" rtt "$pool_rtt_n"
}

pool_table() {
	local i b name
	table_head "pool: medians of $runs_done run(s); min and max over the same runs" \
		"apply_async: $pool_async_n calls all in flight; round trip: $pool_rtt_n sequential apply calls;" \
		"one worker per CPU. ratio = median / reference median (for latencies lower is better)." \
		"Targets are reported, never asserted."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] apply_async" "fp.$b.async" rate tasks/s \
			"Python apply_async" py.async rate
		row "[$name] apply round trip p50" "fp.$b.rtt" p50_us us \
			"Python apply p50" py.rtt p50_us "<=0.5"
		row "[$name] apply round trip p99" "fp.$b.rtt" p99_us us \
			"Python apply p99" py.rtt p99_us
	done
	row "Python apply_async" py.async rate tasks/s
	row "Python apply round trip p50" py.rtt p50_us us
	row "Python apply round trip p99" py.rtt p99_us us
}
