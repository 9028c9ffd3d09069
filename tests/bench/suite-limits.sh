# shellcheck shell=bash disable=SC2154,SC2034
# suite: limits    issue 13's limits, under each backend: a normal client's /v1/health and apply p99 while 2,048 slow/idle connections are open (tests/bench/limits_conns.py); master RSS growth with 20 stalled readers of a running 300 x 1 MB map (tests/bench/limits_memory.py)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Each part of issue 13 that owns a figure adds its measurement (a tests/bench/limits_PART.py
# printing one result line) to limits_rep and its rows to limits_table. A goal is an absolute
# figure: it is stored as a reference of its own (goal.*, in limits_prepare), so that a row's
# target "<=1" against it reads "met" when the median is at or under the goal.
#
# Connections: forkpoold with its default deadlines and caps (it raises its own soft
# RLIMIT_NOFILE for --max-connections 16384); limits_conns.py opens 1,024 idle keep-alive
# connections and 1,024 that send a request body a byte a second, and times a normal client's
# GET /v1/health and POST /v1/apply?wait= one after the other, quiet first, then among them.
#
# Memory: forkpoold with 2 workers; limits_memory.py submits the map, attaches the readers while
# it runs, and once it is done and every reader has bytes waiting, reads the master's VmRSS; the
# growth is less what the job itself holds (its records and values, /metrics'
# forkpool_results_bytes). One reader then reads its whole stream, checked line by line.

limits_runs=3
limits_budget=240
if [ "$quick" -eq 1 ]; then
	limits_slow=256
	limits_idle=256
	limits_seconds=3
else
	limits_slow=1024
	limits_idle=1024
	limits_seconds=6
fi
limits_conns_py=tests/bench/limits_conns.py
limits_mem_readers=20
if [ "$quick" -eq 1 ]; then
	limits_mem_items=60
else
	limits_mem_items=300
fi
limits_memory_py=tests/bench/limits_memory.py

limits_prepare() {
	local hard need=$((limits_slow + limits_idle + 400))
	fpd_backends_probe || return 1
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
		echo "bench: limits: RLIMIT_NOFILE's hard limit ($hard) is under the $need descriptors $((limits_slow + limits_idle)) connections need" >&2
		return 1
	fi
	# Issue 13's goals, as references for the rows' targets.
	echo "goal.conns p99_ms=50" >>"$results"
	echo "goal.mem growth_kb=$((64 * 1024))" >>"$results"
	echo "   backends: ${fpd_backend_names[*]}; $limits_slow slow + $limits_idle idle connections;" \
		"$limits_mem_readers stalled readers of $limits_mem_items x 1 MB"
}

limits_rep() {
	local b
	for b in "${fpd_backends[@]}"; do
		if fpd_start_for "conns.$b" "$b"; then
			run "conns.$b" "$python" "$limits_conns_py" "$port" "$limits_slow" "$limits_idle" \
				"$limits_seconds"
		fi
		server_stop
		if fpd_start_for "mem.$b" "$b"; then
			run "mem.$b" "$python" "$limits_memory_py" "$port" "$server" \
				"$limits_mem_readers" "$limits_mem_items"
		fi
		server_stop
	done
}

limits_table() {
	local i b name n=$((limits_slow + limits_idle))
	table_head "limits: medians of $runs_done run(s); min and max over the same runs" \
		"Connections: a normal client's latency (one keep-alive connection, requests one after" \
		"the other) among $limits_slow connections drip-feeding a body and $limits_idle idle ones;" \
		"\"quiet\": the same client with nothing else open. Memory: master VmRSS growth with" \
		"$limits_mem_readers clients that never read the results of a running map of $limits_mem_items x 1 MB," \
		"less what the job itself holds. Target: at or under the goal."
	for i in "${!fpd_backends[@]}"; do
		b=${fpd_backends[$i]}
		name=${fpd_backend_names[$i]}
		row "[$name] /v1/health p99, $n slow/idle" "conns.$b" health_p99_ms ms \
			"goal: under 50 ms" goal.conns p99_ms "<=1"
		row "" "conns.$b" health_p99_ms ms "[$name] /v1/health p99, quiet" "conns.$b" quiet_health_p99_ms
		row "[$name] apply p99, $n slow/idle" "conns.$b" apply_p99_ms ms \
			"goal: under 50 ms" goal.conns p99_ms "<=1"
		row "" "conns.$b" apply_p99_ms ms "[$name] apply p99, quiet" "conns.$b" quiet_apply_p99_ms
		row "[$name] /v1/health p50, $n slow/idle" "conns.$b" health_p50_ms ms
		row "[$name] apply p50, $n slow/idle" "conns.$b" apply_p50_ms ms
		row "[$name] RSS growth, $limits_mem_readers stalled readers" "mem.$b" growth_kb KiB \
			"goal: under 64 MiB" goal.mem growth_kb "<=1"
		row "[$name] the job's own results" "mem.$b" job_kb KiB
		row "[$name] /v1/health among the readers" "mem.$b" health_ms ms
	done
}
