# shellcheck shell=bash disable=SC2154,SC2034
# suite: crash     a worker SIGKILLed in the middle of a task: forkpool embedded (tests/bench/bench-crash.c) and over HTTP, multiprocessing.Pool and ProcessPoolExecutor (tests/bench/crash_bench.py): what each does, and how long the work takes to complete
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# The same work everywhere: 2 workers, crash_items `sleep` items of crash_ms ms submitted at
# once (forkpool: one map, chunksize 1; Pool: apply_async each; PPE: submit each), and
# crash_kill_ms later one worker gets SIGKILL - the middle of its second item. Each is run once
# more without the kill, the baseline for its time. Python's Pool never delivers the killed
# task's result, so its wait is bounded (crash_wait_s) and the run is reported "hung".
# crash_bench.py and bench-crash exit non-zero when forkpool breaks its promise (the job
# completes, exactly the killed item fails naming SIGKILL) or a Python pool behaves otherwise
# than described, which fails the run.

crash_runs=3
crash_budget=110
crash_items=10 crash_ms=200 crash_kill_ms=300
if [ "$quick" -eq 1 ]; then
	crash_wait_s=5
else
	crash_wait_s=10
fi
bench_crash=$builddir/tests/bench/bench-crash
crash_py=tests/bench/crash_bench.py

crash_header() {
	echo "== crash: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

crash_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}"
}

crash_rep() {
	local b k kill s
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.crash" "$bench_crash" "$crash_items" "$crash_ms" "$crash_kill_ms"
		FORKPOOL_LOOP=$b run "fp.$b.crash0" "$bench_crash" "$crash_items" "$crash_ms" 0
	done
	for b in "${fp_backends[@]}"; do
		for k in crash crash0; do
			kill=$crash_kill_ms
			[ "$k" = crash0 ] && kill=0
			if fpd_start_for "fp.$b.http.$k" "$b"; then
				run "fp.$b.http.$k" "$python" "$crash_py" http "$port" "$crash_items" "$crash_ms" "$kill"
			fi
			server_stop
		done
	done
	for s in pool ppe; do
		run "py.$s.crash" "$python" "$crash_py" "$s" "$crash_items" "$crash_ms" "$crash_kill_ms" "$crash_wait_s"
		run "py.$s.crash0" "$python" "$crash_py" "$s" "$crash_items" "$crash_ms" 0 "$crash_wait_s"
	done
}

# crash_outcome KEY NAME : what the system did, by the outcome most runs reported, and the median
# counts of items answered, failed, lost (failed without having been killed) and hung runs.
crash_outcome() {
	local key=$1 name=$2 line ok fl lost outcome hung
	line=$(awk -v key="$key" '$1 == key {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			n++; seen[f["outcome"]]++; ok[n] = f["ok"]; fl[n] = f["failed"]; lost[n] = f["lost"]; hung += f["hung"]
		}
		function med(a,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return a[int((n + 1) / 2)]
		}
		END {
			if (n == 0) exit
			best = ""; for (o in seen) if (best == "" || seen[o] > seen[best]) best = o
			printf "%s %s %s %s %d/%d\n", med(ok), med(fl), med(lost), best, hung, n
		}' "$results")
	[ -n "$line" ] || { printf '%-44s %s\n' "$name" "failed"; return 0; }
	read -r ok fl lost outcome hung <<<"$line"
	printf '%-44s %4s %6s %4s %6s  %s\n' "$name" "$ok" "$fl" "$lost" "$hung" "${outcome//_/ }"
	echo "suite=crash key=$key field=outcome ok=$ok failed=$fl lost=$lost hung_runs=$hung outcome=$outcome | $name |" \
		>>"$bench_results_file"
}

crash_table() {
	local i b name
	table_head "crash: medians of $runs_done run(s); min and max over the same runs" \
		"2 workers, $crash_items items of sleep $crash_ms ms submitted at once; ${crash_kill_ms} ms in, one worker gets SIGKILL." \
		"seconds: from submitting to the last answer (Python Pool: to the end of its ${crash_wait_s} s bounded wait)." \
		"ratio = median / the same system's median without the kill."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] embedded, worker SIGKILLed" "fp.$b.crash" seconds s \
			"[$name] embedded, no kill" "fp.$b.crash0" seconds
		row "[$name] HTTP map, worker SIGKILLed" "fp.$b.http.crash" seconds s \
			"[$name] HTTP map, no kill" "fp.$b.http.crash0" seconds
	done
	row "Python Pool, worker SIGKILLed" py.pool.crash seconds s "Python Pool, no kill" py.pool.crash0 seconds
	row "Python PPE, worker SIGKILLed" py.ppe.crash seconds s "Python PPE, no kill" py.ppe.crash0 seconds
	echo
	echo "   What each system did with the SIGKILL ($crash_items items; medians over the runs; lost = failed"
	echo "   without being the killed one; hung = runs whose results did not all arrive):"
	echo
	printf '%-44s %4s %6s %4s %6s  %s\n' system ok failed lost hung outcome
	printf '%.0s-' {1..120}
	echo
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		crash_outcome "fp.$b.crash" "forkpool [$name] embedded map"
		crash_outcome "fp.$b.http.crash" "forkpool [$name] HTTP map"
	done
	crash_outcome py.pool.crash "multiprocessing.Pool apply_async"
	crash_outcome py.ppe.crash "ProcessPoolExecutor submit"
}
