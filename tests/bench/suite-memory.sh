# shellcheck shell=bash disable=SC2154,SC2034
# suite: memory    forkpoold's master RSS idle and with 10,000 idle keep-alive connections, and its workers' RSS, under each backend (tests/bench/mem_bench.py), against multiprocessing.Pool's master and workers
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# forkpoold starts with 2 workers, --max-connections just above the count and its RLIMIT_NOFILE
# set to hold them and the descriptors it keeps beside them (with less it lowers its cap);
# mem_bench.py raises its own limit, opens the
# connections, has one GET /v1/health answered on each, and reads the master's VmRSS while
# /metrics counts them all open. Sizes are steady-state figures, so runs vary little.

memory_runs=3
memory_budget=60
if [ "$quick" -eq 1 ]; then
	memory_conns=2000
else
	memory_conns=10000
fi
memory_py=tests/bench/mem_bench.py

memory_prepare() {
	local hard
	fp_backends_probe || return 1
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt $((memory_conns + 400)) ]; then
		echo "bench: memory: RLIMIT_NOFILE's hard limit ($hard) is under the $((memory_conns + 400)) descriptors $memory_conns connections need" >&2
		return 1
	fi
	echo "   backends: ${fp_backend_names[*]}; $memory_conns connections"
}

memory_rep() {
	local b
	for b in "${fp_backends[@]}"; do
		if fpd_nofile=$((memory_conns + 400)) fpd_start_for "fp.$b.mem" "$b" \
			--max-connections $((memory_conns + 100)); then
			run "fp.$b.mem" "$python" "$memory_py" fpd "$port" "$server" "$memory_conns"
		fi
		server_stop
	done
	run py.mem "$python" "$memory_py" python
}

memory_table() {
	local i b name
	table_head "memory: medians of $runs_done run(s); min and max over the same runs" \
		"VmRSS in KiB; PSS shares each shared page among the processes mapping it. 2 workers;" \
		"$memory_conns idle keep-alive connections, each after one answered GET /v1/health." \
		"ratio = median / reference median (lower is better)."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] master RSS idle" "fp.$b.mem" master_idle_kb KiB \
			"Python Pool master RSS" py.mem master_idle_kb
		row "[$name] master RSS, $memory_conns conns" "fp.$b.mem" master_conns_kb KiB \
			"[$name] master RSS idle" "fp.$b.mem" master_idle_kb
		row "[$name] per idle connection" "fp.$b.mem" per_conn_b bytes
		row "[$name] worker RSS" "fp.$b.mem" worker_kb KiB "Python Pool worker RSS" py.mem worker_kb
		row "[$name] worker PSS" "fp.$b.mem" worker_pss_kb KiB "Python Pool worker PSS" py.mem worker_pss_kb
	done
	row "Python Pool master RSS" py.mem master_idle_kb KiB
	row "Python Pool worker RSS" py.mem worker_kb KiB
	row "Python Pool worker PSS" py.mem worker_pss_kb KiB
}
