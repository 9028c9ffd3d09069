# shellcheck shell=bash disable=SC2154,SC2034
# suite: scaling   CPU-bound tasks (`spin`: ~10 ms of CPU time each) on 1 and on N workers (N = CPUs), forkpool (tests/bench/bench-pool.c spin) against Python's Pool (tests/bench/pool_bench.py spin): the speed-up of N workers over 1
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# A spin item burns its milliseconds of the worker's own CPU time, so it is the same work however
# busy the machine is; the wall time of the map is what is measured. On N free cores the ideal
# speed-up is N; a shared machine's other load takes its share.

scaling_runs=3
scaling_budget=60
if [ "$quick" -eq 1 ]; then
	scaling_items=40
else
	scaling_items=60
fi
scaling_ms=10
scaling_n=$(nproc)

scaling_header() {
	echo "== scaling: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

scaling_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}; 1 and $scaling_n workers"
}

scaling_rep() {
	local b
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.spin1" "$bench_pool" spin 1 "$scaling_items" "$scaling_ms"
		FORKPOOL_LOOP=$b run "fp.$b.spinN" "$bench_pool" spin "$scaling_n" "$scaling_items" "$scaling_ms"
	done
	run py.spin1 "$python" "$pool_py" spin 1 "$scaling_items" "$scaling_ms"
	run py.spinN "$python" "$pool_py" spin "$scaling_n" "$scaling_items" "$scaling_ms"
}

scaling_table() {
	local i b name
	table_head "scaling: medians of $runs_done run(s); min and max over the same runs" \
		"$scaling_items items of $scaling_ms ms of CPU each (map, chunksize 1) on 1 and on $scaling_n workers." \
		"The ratio of N workers to 1 is the speed-up (ideal: $scaling_n). ratio = median / reference median."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] $scaling_n workers" "fp.$b.spinN" rate tasks/s "[$name] 1 worker" "fp.$b.spin1" rate
		row "" "fp.$b.spinN" rate "" "Python Pool $scaling_n workers" py.spinN rate
		row "[$name] 1 worker" "fp.$b.spin1" rate tasks/s "Python Pool 1 worker" py.spin1 rate
	done
	row "Python Pool $scaling_n workers" py.spinN rate tasks/s "Python Pool 1 worker" py.spin1 rate
	row "Python Pool 1 worker" py.spin1 rate tasks/s
}
