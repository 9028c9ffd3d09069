# shellcheck shell=bash disable=SC2154,SC2034
# suite: recycle   max-tasks-per-child 1 and 100 (tests/bench/bench-pool.c mtpc) under each backend, against no recycling, Python's Pool(maxtasksperchild=...) and the machine's bare fork+_exit+waitpid rate (tests/bench/fork-floor.c)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Two ways to feed the pool: map with chunksize 1 (one queue of items) and every item submitted
# at once by apply_async. At mtpc=1 each item costs a fork, an exit and a reap, so the fork floor
# is its ceiling; at mtpc=100 one fork in a hundred items should hardly show. Trivial items make a
# recycle dearer than the hundred tasks it serves, so mtpc=100 is also measured on `spin` items of
# 1 ms each (issue 16: >= 0.95x no recycling), map with chunksize 1.

recycle_runs=3
recycle_budget=150
# Python forks a replacement worker far more slowly than forkpool (tens of ms a task at
# maxtasksperchild=1 on a small VM), so its mtpc=1 runs are shorter: a rate, not a total, is compared.
if [ "$quick" -eq 1 ]; then
	recycle_mtpc1_n=100 recycle_py_mtpc1_n=20 recycle_n=2000 recycle_fork_n=300 recycle_spin_n=400
else
	recycle_mtpc1_n=150 recycle_py_mtpc1_n=30 recycle_n=3000 recycle_fork_n=500 recycle_spin_n=1000
fi

recycle_header() {
	echo "== recycle: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

recycle_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}"
}

recycle_rep() {
	local b m
	run floor "$fork_floor" "$recycle_fork_n"
	for m in map async; do
		for b in "${fp_backends[@]}"; do
			FORKPOOL_LOOP=$b run "fp.$b.mtpc1.$m" "$bench_pool" mtpc 1 "$recycle_mtpc1_n" "$m"
			FORKPOOL_LOOP=$b run "fp.$b.mtpc100.$m" "$bench_pool" mtpc 100 "$recycle_n" "$m"
			FORKPOOL_LOOP=$b run "fp.$b.mtpc0.$m" "$bench_pool" mtpc 0 "$recycle_n" "$m"
		done
		run "py.mtpc1.$m" "$python" "$pool_py" mtpc 1 "$recycle_py_mtpc1_n" "$m"
		run "py.mtpc100.$m" "$python" "$pool_py" mtpc 100 "$recycle_n" "$m"
		run "py.mtpc0.$m" "$python" "$pool_py" mtpc 0 "$recycle_n" "$m"
	done
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.mtpc100.spin" "$bench_pool" mtpc 100 "$recycle_spin_n" map 1
		FORKPOOL_LOOP=$b run "fp.$b.mtpc0.spin" "$bench_pool" mtpc 0 "$recycle_spin_n" map 1
	done
}

recycle_table() {
	local i b name m what
	table_head "recycle: medians of $runs_done run(s); min and max over the same runs" \
		"mtpc = max tasks per child; trivial \`square\` items, one worker per CPU: mtpc=1 $recycle_mtpc1_n items" \
		"(Python $recycle_py_mtpc1_n), mtpc=100 and none $recycle_n items; fork floor $recycle_fork_n forks, one at a time." \
		"spin: $recycle_spin_n \`spin\` items of 1 ms, map cs=1." \
		"ratio = median / reference median. Targets are reported, never asserted."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
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
		row "[$name] mtpc=100 spin 1 ms" "fp.$b.mtpc100.spin" rate tasks/s \
			"[$name] no recycling" "fp.$b.mtpc0.spin" rate 0.95
		row "[$name] no recycling spin 1 ms" "fp.$b.mtpc0.spin" rate tasks/s
	done
	for m in map async; do
		what="map cs=1"
		[ "$m" = async ] && what="apply_async"
		row "Python mtpc=1 $what" "py.mtpc1.$m" rate tasks/s "fork floor" floor rate
		row "Python mtpc=100 $what" "py.mtpc100.$m" rate tasks/s \
			"Python no recycling $what" "py.mtpc0.$m" rate
		row "Python no recycling $what" "py.mtpc0.$m" rate tasks/s
	done
	row "fork floor (fork+_exit+waitpid)" floor rate forks/s
}
