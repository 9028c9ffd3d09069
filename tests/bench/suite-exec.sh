# shellcheck shell=bash disable=SC2154
# suite: exec      a trivial Python task (tests/bench/exec_task.py) through forkpoold's exec pool over HTTP, against multiprocessing.Pool on the same function (and Celery with redis when a peers harness provides it)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Throughput: wrk -t1 -c50 on POST /v1/apply?wait=5 {"task":"py.square","args":7} against a fresh
# forkpoold with 2 Python workers (--exec-workers 2, the C pool cut to 1 worker), compared with
# Pool.apply_async of the same function in 2 processes, all calls in flight (pool_bench.py).
# Round trip: one client, sequential applies on one keep-alive connection (exec_http.py), against
# Pool.apply (pool_bench.py rtt), and against the same HTTP apply of the built-in C task `square`,
# which shows what the exec pool adds to the HTTP path. Celery+redis (the peers suite's harness,
# tests/bench/peers-servers.sh and celery_bench.py, when they are there) runs the same x*x with 2
# prefork workers: throughput with 4 submitter processes of 4 tasks in flight each, as the peers
# suite measures it.

bench_packages+=(wrk)
exec_worker=tests/bench/exec_task.py
exec_http=tests/bench/exec_http.py
exec_wrk=tests/bench/wrk-exec.lua
exec_celery=
if [ -f tests/bench/peers-servers.sh ] && [ -f tests/bench/celery_bench.py ]; then
	exec_celery=tests/bench/celery_bench.py
	bench_packages+=(redis-server python3-celery python3-redis)
	# shellcheck source=tests/bench/peers-servers.sh
	declare -F celery_start >/dev/null || . tests/bench/peers-servers.sh
fi
exec_backends=()
exec_backend_names=()
if [ "$quick" -eq 1 ]; then
	exec_async_n=20000 exec_rtt_n=2000
else
	exec_async_n=100000 exec_rtt_n=5000
fi

exec_header() {
	echo "== exec: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), forkpool $(fp_version)"
}

# exec_fpd_start BACKEND : forkpoold with the Python exec pool, once its programs said ready.
exec_fpd_start() {
	local i
	fpd_start "$1" --workers 1 --exec-workers 2 --exec "py=$python $exec_worker" || return 1
	for ((i = 0; i < 100; i++)); do
		curl -s -m 5 "http://127.0.0.1:$port/v1/tasks" | grep -q '"py.square"' && return 0
		sleep 0.1
	done
	return 1
}

exec_prepare() {
	local b
	fp_backends_probe || return 1
	for b in "${!fp_backends[@]}"; do
		if exec_fpd_start "${fp_backends[$b]}"; then
			exec_backends+=("${fp_backends[$b]}")
			exec_backend_names+=("${fp_backend_names[$b]}")
		else
			echo "bench: forkpoold --exec did not start under ${fp_backends[$b]}:" >&2
			sed 's/^/    /' "$tmp/fpd.log" | tail -n 3 >&2
		fi
		server_stop
	done
	[ "${#exec_backends[@]}" -gt 0 ] || return 1
	echo "   backends: ${exec_backend_names[*]}; Celery: $([ -n "$exec_celery" ] && echo yes || echo "no harness, skipped")"
}

exec_rep() {
	local b
	for b in "${exec_backends[@]}"; do
		if exec_fpd_start "$b"; then
			wrk_run "fp.$b.exec.apply" "http://127.0.0.1:$port/v1/apply?wait=5" "$exec_wrk"
			run "fp.$b.exec.rtt" "$python" "$exec_http" "$port" "$exec_rtt_n"
			run "fp.$b.c.rtt" "$python" "$exec_http" "$port" "$exec_rtt_n" square
		else
			failed "fp.$b.exec.apply" "forkpoold --exec did not start"
		fi
		server_stop
	done
	run py.async "$python" "$pool_py" apply-async "$exec_async_n"
	run py.rtt "$python" "$pool_py" rtt "$exec_rtt_n"
	if [ -n "$exec_celery" ]; then
		if redis_start exec-redis && celery_start exec-celery "$redis_url"; then
			run celery.async "${celery_env[@]}" "$sys_python" "$exec_celery" throughput \
				celery_bench:square 4 4 "$wrk_seconds"
		else
			failed celery.async "redis or the Celery worker did not start"
		fi
		peer_stop exec-celery
		peer_stop exec-redis
	fi
}

exec_table() {
	local i b name
	table_head "exec: medians of $runs_done run(s); min and max over the same runs" \
		"forkpoold --exec-workers 2 (Python, tests/bench/exec_task.py), wrk -t1 -c50 ${wrk_seconds} s;" \
		"round trip: one client, $exec_rtt_n sequential HTTP applies; references: multiprocessing.Pool" \
		"with $(nproc) processes, apply_async x $exec_async_n in flight and apply x $exec_rtt_n." \
		"ratio = median / reference median (for latencies lower is better). Targets are reported."
	for i in "${!exec_backends[@]}"; do
		b=${exec_backends[$i]}
		name=${exec_backend_names[$i]}
		if [ -n "$exec_celery" ]; then
			row "[$name] HTTP apply py.square" "fp.$b.exec.apply" rate tasks/s \
				"Celery apply_async + get" celery.async rate 2
			row "" "fp.$b.exec.apply" rate "" "Pool.apply_async" py.async rate
		else
			row "[$name] HTTP apply py.square" "fp.$b.exec.apply" rate tasks/s \
				"Pool.apply_async" py.async rate
		fi
		row "[$name] HTTP round trip p50" "fp.$b.exec.rtt" p50_us us \
			"Pool.apply p50" py.rtt p50_us "<=2"
		row "" "fp.$b.exec.rtt" p50_us "" "[$name] HTTP C square p50" "fp.$b.c.rtt" p50_us
		row "[$name] HTTP round trip p99" "fp.$b.exec.rtt" p99_us us \
			"Pool.apply p99" py.rtt p99_us
	done
}
