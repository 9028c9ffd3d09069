# shellcheck shell=bash disable=SC2034,SC2154
# suite: peers     forkpool against what users would pick instead: trivial-task throughput with many clients (forkpoold HTTP apply vs nginx return 200, uWSGI, gunicorn, gearmand with C workers, Celery+redis) and single-task round trip p50/p99 (forkpoold HTTP and embedded vs Pool.apply, ProcessPoolExecutor, gearmand, Celery, uWSGI, gunicorn)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# The same work everywhere: the square of an integer sent by the client, computed in a worker
# process, its result checked by the client. Every system gets 2 worker processes.
#
# 1. Throughput, many clients, for wrk_seconds a run (lib.sh: 3 s):
#    - HTTP (forkpoold under each backend, uWSGI, gunicorn, nginx): wrk -t1 -c50 keep-alive, the
#      request of tests/bench/wrk-apply.lua; nginx answers `return 200` without any work (the
#      ceiling; the better of 1 and 2 nginx workers is the reference). Like for like, twice:
#      forkpoold at its default level writes an access line a request, so it is compared with
#      nginx writing one too (`access_log FILE buffer=64k`); forkpoold at `--log-level warn`
#      writes none and is compared with nginx's `access_log off`. A server's answers are
#      first checked with tests/bench/http-rtt (200 and the right square), then wrk's counts of
#      statuses >= 400 and socket errors must be zero.
#    - gearmand: tests/bench/gearman-client with 50 threads, one connection and one job in flight
#      each (gearman_client_do), against 2 tests/bench/gearman-worker processes; every result
#      checked.
#    - Celery+redis: tests/bench/celery_bench.py with peers_celery_procs submitter processes,
#      each keeping peers_celery_window tasks in flight (apply_async, get() the oldest); every
#      result checked.
# 2. Round trip, one client, sequential, p50/p99 by nearest rank everywhere: tests/bench/http-rtt
#    for every HTTP server (one kept-alive connection; gunicorn closes it after each answer, so
#    its round trips include a connect), bench-pool rtt for the embedded API, pool_bench.py rtt
#    (Pool.apply), ppe_rtt.py (submit().result()), gearman-client rtt (gearman_client_do),
#    celery_bench.py rtt (delay().get()).
# Every server is started afresh each repetition (forkpoold once per measurement, so no job of
# one is kept in the next), listens on 127.0.0.1 on a free port and is stopped by pid.

bench_packages+=(wrk nginx-light redis-server python3-celery python3-redis gearman-job-server
	libgearman-dev uwsgi uwsgi-plugin-python3 gunicorn curl)
# Three repetitions keep `scripts/bench all` inside its 15 minutes; the budget bounds a slow run.
peers_runs=3
peers_budget=300

# shellcheck source=tests/bench/peers-servers.sh
. tests/bench/peers-servers.sh

http_rtt=$builddir/tests/bench/http-rtt
peers_wrk_apply=tests/bench/wrk-apply.lua
peers_apply_path="/v1/apply?wait=5"
peers_backends=()
peers_backend_names=()
peers_gearman_clients=50
peers_celery_procs=4
peers_celery_window=4
if [ "$quick" -eq 1 ]; then
	peers_rtt_n=1000 peers_celery_rtt_n=150
else
	peers_rtt_n=2000 peers_celery_rtt_n=300
fi

peers_header() {
	echo "== peers: $(nproc) CPUs, $(uname -sr), forkpool $(fp_version), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
	echo "   nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), uWSGI $(uwsgi --version 2>/dev/null)," \
		"$(gunicorn --version 2>/dev/null | tr -d '()')," \
		"gearmand $(gearmand --version 2>/dev/null | sed -n 's/^gearmand \([^ ]*\).*/\1/p')," \
		"redis $(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')," \
		"Celery $("$sys_python" "$celery_py" version 2>/dev/null)," \
		"redis-py $("$sys_python" -c 'import redis; print(redis.__version__)' 2>/dev/null)," \
		"Python $("$sys_python" -c 'import platform; print(platform.python_version())')"
}

# peers_prepare : the forkpoold backends that start here; the gearman programs must be built.
peers_prepare() {
	if [ ! -x "$gearman_client" ]; then
		echo "bench: peers: tests/bench/gearman-client was not built (libgearman-dev missing when" \
			"build-bench/ was configured: meson setup --reconfigure build-bench)" >&2
	fi
	fpd_backends_probe || return 1
	peers_backends=("${fpd_backends[@]}")
	peers_backend_names=("${fpd_backend_names[@]}")
	fp_backends_probe || true
	echo "   forkpoold backends: ${peers_backend_names[*]}; embedded: ${fp_backend_names[*]:-none};" \
		"wrk runs of ${wrk_seconds} s; $peers_rtt_n round trips ($peers_celery_rtt_n for Celery)"
}

# peers_run KEY CMD... : lib.sh's run, returning non-zero when this measurement failed.
peers_run() {
	local before
	before=$(wc -l <"$failures")
	run "$@"
	[ "$(wc -l <"$failures")" -eq "$before" ]
}

# peers_http KEY PORT : the round trips (KEY.rtt), then, if every answer was right, the
# throughput (KEY.tput) of the HTTP server on PORT; the server is left running.
peers_http() {
	local key=$1 p=$2
	if peers_run "$key.rtt" "$http_rtt" 127.0.0.1 "$p" "$peers_apply_path" "$peers_rtt_n"; then
		wrk_run "$key.tput" "http://127.0.0.1:$p$peers_apply_path" "$peers_wrk_apply"
	else
		failed "$key.tput" "not measured: its round trips failed"
	fi
}

# peers_fpd BACKEND : forkpoold's HTTP apply, a fresh server for each measurement.
peers_fpd() {
	local b=$1
	if fpd_start_for "fp.$b.rtt" "$b"; then
		run "fp.$b.rtt" "$http_rtt" 127.0.0.1 "$port" "$peers_apply_path" "$peers_rtt_n"
	fi
	server_stop
	if fpd_start_for "fp.$b.tput" "$b"; then
		if peers_run "fp.$b.check" "$http_rtt" 127.0.0.1 "$port" "$peers_apply_path" 3; then
			wrk_run "fp.$b.tput" "http://127.0.0.1:$port$peers_apply_path" "$peers_wrk_apply"
		else
			failed "fp.$b.tput" "not measured: POST /v1/apply did not answer right"
		fi
	fi
	server_stop
}

# peers_fpd_quiet BACKEND : forkpoold's HTTP apply throughput at --log-level warn (no access
# log: nginx's `access_log off` counterpart), a fresh server.
peers_fpd_quiet() {
	local b=$1
	if fpd_start_for "fp.$b.quiet" "$b" --log-level warn; then
		if peers_run "fp.$b.quiet.check" "$http_rtt" 127.0.0.1 "$port" "$peers_apply_path" 3; then
			wrk_run "fp.$b.quiet" "http://127.0.0.1:$port$peers_apply_path" "$peers_wrk_apply"
		else
			failed "fp.$b.quiet" "not measured: POST /v1/apply did not answer right"
		fi
	fi
	server_stop
}

# peers_start_failed KEY... : the peer did not come up; each of its measurements fails.
peers_start_failed() {
	local k
	for k in "$@"; do
		failed "$k" "$(head -n 1 "$tmp/err")"
	done
	sed '1d; s/^/      /' "$tmp/err" | tail -n 5
}

# One repetition: every system once, throughput and round trips.
peers_rep() {
	local b w
	for w in 1 2; do
		nginx_measure "$w"
		nginx_measure "$w" log
	done
	for b in "${peers_backends[@]}"; do
		peers_fpd "$b"
		peers_fpd_quiet "$b"
	done
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "emb.$b.rtt" "$bench_pool" rtt "$peers_rtt_n"
	done
	run py.pool.rtt "$sys_python" "$pool_py" rtt "$peers_rtt_n"
	run py.ppe.rtt "$sys_python" tests/bench/ppe_rtt.py "$peers_rtt_n"

	if uwsgi_start uwsgi; then
		peers_http uwsgi "$wsgi_port"
	else
		peers_start_failed uwsgi.rtt uwsgi.tput
	fi
	peer_stop uwsgi
	if gunicorn_start gunicorn; then
		peers_http gunicorn "$wsgi_port"
	else
		peers_start_failed gunicorn.rtt gunicorn.tput
	fi
	peer_stop gunicorn

	if gearmand_start gearmand 2; then
		run gearman.rtt "$gearman_client" rtt 127.0.0.1 "$gearmand_port" "$peers_rtt_n"
		run gearman.tput "$gearman_client" throughput 127.0.0.1 "$gearmand_port" \
			"$peers_gearman_clients" "$wrk_seconds"
	else
		peers_start_failed gearman.rtt gearman.tput
	fi
	gearmand_stop gearmand 2

	if redis_start redis && celery_start celery "$redis_url"; then
		run celery.rtt "${celery_env[@]}" "$sys_python" "$celery_py" rtt celery_bench:square \
			"$peers_celery_rtt_n"
		run celery.tput "${celery_env[@]}" "$sys_python" "$celery_py" throughput \
			celery_bench:square "$peers_celery_procs" "$peers_celery_window" "$wrk_seconds"
	else
		peers_start_failed celery.rtt celery.tput
	fi
	peer_stop celery
	peer_stop redis
}

# peers_nginx_ref SUFFIX : the better of nginx's 1 and 2 workers with that access log setting
# ("" off, ".log" buffered), as "KEY|NAME".
peers_nginx_ref() {
	local m1 m2 what="nginx return 200"
	[ -n "$1" ] && what="nginx 200 access log"
	m1=$(stats "nginx.w1$1" rate | cut -d' ' -f1)
	m2=$(stats "nginx.w2$1" rate | cut -d' ' -f1)
	if [ -n "$m2" ] && { [ -z "$m1" ] || awk -v a="$m1" -v b="$m2" 'BEGIN { exit !(b > a) }'; }; then
		echo "nginx.w2$1|$what, 2 workers"
	else
		echo "nginx.w1$1|$what, 1 worker"
	fi
}

peers_table() {
	local i b name ref refname lref lrefname f what
	IFS='|' read -r ref refname <<<"$(peers_nginx_ref "")"
	IFS='|' read -r lref lrefname <<<"$(peers_nginx_ref .log)"
	table_head "peers, throughput: medians of $runs_done run(s) of ${wrk_seconds} s; min and max over the same runs" \
		"Trivial task (square of an integer, checked), many clients, 2 worker processes each." \
		"HTTP: wrk -t1 -c50 keep-alive (gunicorn's sync workers close every connection), POST" \
		"$peers_apply_path {\"task\":\"square\",\"args\":7}; nginx: return 200, no work (the ceiling," \
		"its better configuration of this run). Like for like: forkpoold at its default level (an" \
		"access line a request) against nginx with access_log FILE buffer=64k; forkpoold --log-level" \
		"warn (no access line) against nginx with access_log off." \
		"gearmand: $peers_gearman_clients client threads, one job in flight each." \
		"Celery+redis: $peers_celery_procs submitter processes x $peers_celery_window tasks in flight." \
		"ratio = median / reference median. Targets are reported, never asserted."
	for i in "${!peers_backends[@]}"; do
		b=${peers_backends[$i]}
		name=${peers_backend_names[$i]}
		row "[$name] HTTP apply square" "fp.$b.tput" rate req/s "$lrefname" "$lref" rate 0.8
		row "" "fp.$b.tput" rate "" "$refname" "$ref" rate 0.5
		row "" "fp.$b.tput" rate "" "gearmand, C workers" gearman.tput rate 3
		row "" "fp.$b.tput" rate "" "uWSGI, 2 processes" uwsgi.tput rate
		row "" "fp.$b.tput" rate "" "gunicorn, 2 sync workers" gunicorn.tput rate
		row "" "fp.$b.tput" rate "" "Celery+redis, prefork 2" celery.tput rate
	done
	for i in "${!peers_backends[@]}"; do
		b=${peers_backends[$i]}
		name=${peers_backend_names[$i]}
		row "[$name] HTTP apply, --log-level warn" "fp.$b.quiet" rate req/s "$refname" "$ref" rate 0.8
	done
	if [ "${#peers_backends[@]}" -eq 2 ]; then
		row "io_uring/epoll HTTP apply" "fp.${peers_backends[0]}.tput" rate req/s \
			"[${peers_backend_names[1]}] HTTP apply square" "fp.${peers_backends[1]}.tput" rate 1.1
		row "io_uring/epoll, --log-level warn" "fp.${peers_backends[0]}.quiet" rate req/s \
			"[${peers_backend_names[1]}] --log-level warn" "fp.${peers_backends[1]}.quiet" rate 1.1
	fi
	row "nginx return 200, 1 worker" nginx.w1 rate req/s
	row "nginx return 200, 2 workers" nginx.w2 rate req/s
	row "nginx return 200, access log, 1 worker" nginx.w1.log rate req/s
	row "nginx return 200, access log, 2 workers" nginx.w2.log rate req/s
	row "uWSGI, 2 processes" uwsgi.tput rate req/s
	row "gunicorn, 2 sync workers" gunicorn.tput rate req/s
	row "gearmand, 2 C workers" gearman.tput rate jobs/s
	row "Celery+redis, prefork 2" celery.tput rate tasks/s

	table_head "peers, round trip: medians of $runs_done run(s) of $peers_rtt_n sequential calls ($peers_celery_rtt_n for Celery)" \
		"One client, one call at a time; p50/p99 by nearest rank for every system. HTTP: one" \
		"kept-alive connection (tests/bench/http-rtt). ratio = median / reference median; lower is better."
	for f in p50 p99; do
		for i in "${!peers_backends[@]}"; do
			b=${peers_backends[$i]}
			name=${peers_backend_names[$i]}
			row "[$name] HTTP apply $f" "fp.$b.rtt" "${f}_us" us "Pool.apply $f" py.pool.rtt "${f}_us" \
				"$([ "$f" = p50 ] && echo '<=0.5')"
			row "" "fp.$b.rtt" "${f}_us" "" "ProcessPoolExecutor $f" py.ppe.rtt "${f}_us"
			row "" "fp.$b.rtt" "${f}_us" "" "gearmand $f" gearman.rtt "${f}_us"
			row "" "fp.$b.rtt" "${f}_us" "" "Celery delay().get() $f" celery.rtt "${f}_us"
			row "" "fp.$b.rtt" "${f}_us" "" "uWSGI $f" uwsgi.rtt "${f}_us"
		done
		for i in "${!fp_backends[@]}"; do
			b=${fp_backends[$i]}
			name=${fp_backend_names[$i]}
			row "[$name] embedded apply $f" "emb.$b.rtt" "${f}_us" us "Pool.apply $f" py.pool.rtt \
				"${f}_us" "$([ "$f" = p50 ] && echo '<=0.5')"
			row "" "emb.$b.rtt" "${f}_us" "" "ProcessPoolExecutor $f" py.ppe.rtt "${f}_us"
			row "" "emb.$b.rtt" "${f}_us" "" "gearmand $f" gearman.rtt "${f}_us"
			row "" "emb.$b.rtt" "${f}_us" "" "Celery delay().get() $f" celery.rtt "${f}_us"
		done
	done
	for f in p50 p99; do
		for what in "Pool.apply:py.pool.rtt" "ProcessPoolExecutor submit().result():py.ppe.rtt" \
			"gearmand gearman_client_do:gearman.rtt" "Celery delay().get():celery.rtt" \
			"uWSGI over HTTP:uwsgi.rtt" "gunicorn over HTTP (connect each):gunicorn.rtt"; do
			row "${what%%:*} $f" "${what#*:}" "${f}_us" us
		done
	done
}
