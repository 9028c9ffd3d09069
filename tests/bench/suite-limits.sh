# shellcheck shell=bash disable=SC2154,SC2034
# suite: limits    issue 13's limits, under each backend: a normal client's /v1/health and apply p99 while 2,048 slow/idle connections are open (tests/bench/limits_conns.py); master RSS growth with 20 stalled readers of a running 300 x 1 MB map (tests/bench/limits_memory.py); items lost or failed while workers are SIGKILLed every 100 ms during a 40k-item map with retries 3 (tests/bench/limits_storm.py)
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
#
# The kill storm: forkpoold with 4 workers; limits_storm.py submits one NDJSON map of
# limits_storm_items `sleep` items of limits_storm_ms ms with retries 3, and SIGKILLs a random
# busy worker every 100 ms until the job ends. Goal: 0 lost, 0 failed (absolute, so printed
# without a ratio). It fails the run when a value is wrong, an item was started more than 4
# times or an answer is missing.

limits_runs=3
limits_budget=360
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
if [ "$quick" -eq 1 ]; then
	limits_storm_items=4000
else
	limits_storm_items=40000
fi
limits_storm_ms=1
limits_storm_py=tests/bench/limits_storm.py

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
		"$limits_mem_readers stalled readers of $limits_mem_items x 1 MB; kill storm over" \
		"$limits_storm_items items"
}

limits_storm_rep() {
	local b=$1
	if fpd_start_for "storm.$b" "$b" --workers 4; then
		run "storm.$b" "$python" "$limits_storm_py" "$port" "$limits_storm_items" \
			"$limits_storm_ms" 100
	fi
	server_stop
}

limits_storm_rows() {
	local b=$1 name=$2
	row "[$name] kill storm: items lost" "storm.$b" lost items
	row "[$name] kill storm: items failed" "storm.$b" failed items
	row "[$name] kill storm: most starts of an item" "storm.$b" attempts_max starts
	row "[$name] kill storm: workers SIGKILLed" "storm.$b" kills kills
	row "[$name] kill storm: map time" "storm.$b" seconds s
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
		limits_storm_rep "$b"
	done
}

limits_table() {
	local i b name n=$((limits_slow + limits_idle))
	table_head "limits: medians of $runs_done run(s); min and max over the same runs" \
		"Connections: a normal client's latency (one keep-alive connection, requests one after" \
		"the other) among $limits_slow connections drip-feeding a body and $limits_idle idle ones;" \
		"\"quiet\": the same client with nothing else open. Memory: master VmRSS growth with" \
		"$limits_mem_readers clients that never read the results of a running map of $limits_mem_items x 1 MB," \
		"less what the job itself holds. Target: at or under the goal. Kill storm: 4 workers, one" \
		"map of $limits_storm_items sleep items of $limits_storm_ms ms, retries 3, a random busy worker SIGKILLed" \
		"every 100 ms until it ends; goal: 0 lost, 0 failed, at most 4 starts of an item."
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
		limits_storm_rows "$b" "$name"
	done
}
