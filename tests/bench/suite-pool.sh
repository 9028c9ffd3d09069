# shellcheck shell=bash disable=SC2154
# suite: pool      the embedded API (tests/bench/bench-pool.c) under each event-loop backend, against Python's multiprocessing.Pool (tests/bench/pool_bench.py) and the machine's fork floor (tests/bench/fork-floor.c)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.

# Sizes. Python forks a replacement worker far more slowly than forkpool (tens of ms a task at
# maxtasksperchild=1 on a small VM), so its mtpc=1 runs are shorter: a rate, not a total, is compared.
if [ "$quick" -eq 1 ]; then
	pool_map_n=200000 pool_async_n=20000 pool_rtt_n=5000 pool_mtpc1_n=300 pool_py_mtpc1_n=60 pool_mtpc_n=3000 pool_fork_n=1000
else
	pool_map_n=1000000 pool_async_n=100000 pool_rtt_n=20000 pool_mtpc1_n=500 pool_py_mtpc1_n=100 pool_mtpc_n=5000 pool_fork_n=2000
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
	local b m
	run floor "$fork_floor" "$pool_fork_n"
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.map" "$bench_pool" map "$pool_map_n"
	done
	run py.map1000 "$python" "$pool_py" map "$pool_map_n" 1000
	run py.mapdef "$python" "$pool_py" map "$pool_map_n"
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.async" "$bench_pool" apply-async "$pool_async_n"
	done
	run py.async "$python" "$pool_py" apply-async "$pool_async_n"
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.rtt" "$bench_pool" rtt "$pool_rtt_n"
	done
	run py.rtt "$python" "$pool_py" rtt "$pool_rtt_n"
	for m in map async; do
		for b in "${fp_backends[@]}"; do
			FORKPOOL_LOOP=$b run "fp.$b.mtpc1.$m" "$bench_pool" mtpc 1 "$pool_mtpc1_n" "$m"
			FORKPOOL_LOOP=$b run "fp.$b.mtpc100.$m" "$bench_pool" mtpc 100 "$pool_mtpc_n" "$m"
			FORKPOOL_LOOP=$b run "fp.$b.mtpc0.$m" "$bench_pool" mtpc 0 "$pool_mtpc_n" "$m"
		done
		run "py.mtpc1.$m" "$python" "$pool_py" mtpc 1 "$pool_py_mtpc1_n" "$m"
		run "py.mtpc100.$m" "$python" "$pool_py" mtpc 100 "$pool_mtpc_n" "$m"
		run "py.mtpc0.$m" "$python" "$pool_py" mtpc 0 "$pool_mtpc_n" "$m"
	done
}

pool_table() {
	local i b name m what
	table_head "pool: medians of $runs_done run(s); min and max over the same runs" \
		"sizes: map $pool_map_n, apply_async $pool_async_n (all in flight), rtt $pool_rtt_n sequential;" \
		"mtpc=1 $pool_mtpc1_n items (Python $pool_py_mtpc1_n), mtpc=100 and none $pool_mtpc_n items; fork floor $pool_fork_n forks" \
		"cs = chunksize; mtpc = max tasks per child. ratio = median / reference median (for latencies" \
		"lower is better). Targets are reported, never asserted."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] map default chunksize" "fp.$b.map" rate items/s \
			"Python map chunksize=1000" py.map1000 rate 10
		row "[$name] apply_async" "fp.$b.async" rate tasks/s \
			"Python apply_async" py.async rate
		row "[$name] apply round trip p50" "fp.$b.rtt" p50_us us \
			"Python apply p50" py.rtt p50_us
		row "[$name] apply round trip p99" "fp.$b.rtt" p99_us us \
			"Python apply p99" py.rtt p99_us
		for m in map async; do
			what="map cs=1"
			[ "$m" = async ] && what="apply_async"
			row "[$name] mtpc=1 $what" "fp.$b.mtpc1.$m" rate tasks/s \
				"fork floor" floor rate 0.5
			row "" "fp.$b.mtpc1.$m" rate "" "Python mtpc=1 $what" "py.mtpc1.$m" rate
			row "[$name] mtpc=100 $what" "fp.$b.mtpc100.$m" rate tasks/s \
				"[$name] no recycling" "fp.$b.mtpc0.$m" rate 0.95
			row "" "fp.$b.mtpc100.$m" rate "" "Python mtpc=100 $what" "py.mtpc100.$m" rate
			row "[$name] no recycling $what" "fp.$b.mtpc0.$m" rate tasks/s \
				"Python no recycling $what" "py.mtpc0.$m" rate
		done
	done
	row "Python map chunksize=1000" py.map1000 rate items/s
	row "Python map default chunksize" py.mapdef rate items/s
	row "Python apply_async" py.async rate tasks/s
	row "Python apply round trip p50" py.rtt p50_us us
	row "Python apply round trip p99" py.rtt p99_us us
	for m in map async; do
		row "Python mtpc=1 $m" "py.mtpc1.$m" rate tasks/s
		row "Python mtpc=100 $m" "py.mtpc100.$m" rate tasks/s
		row "Python no recycling $m" "py.mtpc0.$m" rate tasks/s
	done
	row "fork floor (fork+_exit+waitpid)" floor rate forks/s
}
