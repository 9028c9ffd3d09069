# shellcheck shell=bash disable=SC2154,SC2034
# suite: http      forkpoold's trivial HTTP apply and GET /v1/health under each backend, measured with wrk (tests/bench/wrk-apply.lua), against nginx's `return 200` (1 and 2 workers)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Throughput of a trivial request with many clients, measured by wrk for wrk_seconds a run with
# one thread and 50 keep-alive connections (-t1 -c50): on this 2-core machine one wrk thread
# takes one core and leaves the other to the server under test (a second wrk thread would only
# take CPU from the server), and 50 connections keep many requests in flight at once - far more
# than the 2 workers - so the figure is the server's throughput, not the round trip of one
# client. Every server is started afresh for each run (no jobs kept from the run before) and
# stopped by pid.

bench_packages+=(wrk nginx-light)
http_runs=3
http_budget=90
http_wrk_apply=tests/bench/wrk-apply.lua
http_backends=()
http_backend_names=()

http_header() {
	echo "== http: $(nproc) CPUs, $(uname -sr), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), forkpool $(fp_version)"
}

# http_apply_check : one apply by curl before wrk's, to see that the answer is right: 200, done, 49.
http_apply_check() {
	local body code
	body=$(curl -s -m 10 -w '\n%{http_code}' -H 'Content-Type: application/json' \
		-d '{"task":"square","args":7}' "http://127.0.0.1:$port/v1/apply?wait=5" 2>&1) || true
	code=${body##*$'\n'}
	body=${body%$'\n'*}
	[ "$code" = 200 ] && [[ $body =~ \"result\":49[,}] ]] && [[ $body =~ \"state\":\"done\" ]]
}

# http_fpd_measure BACKEND : a fresh forkpoold for each of its two measurements.
http_fpd_measure() {
	local b=$1
	if fpd_start_for "fp.$b.apply" "$b"; then
		if http_apply_check; then
			wrk_run "fp.$b.apply" "http://127.0.0.1:$port/v1/apply?wait=5" "$http_wrk_apply"
		else
			failed "fp.$b.apply" "POST /v1/apply did not answer 200 with result 49"
		fi
	fi
	server_stop
	if fpd_start_for "fp.$b.health" "$b"; then
		wrk_run "fp.$b.health" "http://127.0.0.1:$port/v1/health"
	fi
	server_stop
}

# http_prepare : the backends forkpoold can run here, named as GET /v1/health names them.
http_prepare() {
	fpd_backends_probe || return 1
	http_backends=("${fpd_backends[@]}")
	http_backend_names=("${fpd_backend_names[@]}")
	echo "   backends: ${http_backend_names[*]}; runs of ${wrk_seconds} s each"
}

# One repetition of every http measurement: nginx with 1 and 2 workers, then forkpoold under
# each backend.
http_rep() {
	local b w
	for w in 1 2; do
		nginx_measure "$w"
	done
	for b in "${http_backends[@]}"; do
		http_fpd_measure "$b"
	done
}

http_table() {
	local i j b name ref refname other othername m1 m2
	# The ceiling is the better of the two nginx configurations, by their medians in this run.
	m1=$(stats nginx.w1 rate | cut -d' ' -f1)
	m2=$(stats nginx.w2 rate | cut -d' ' -f1)
	ref=nginx.w1 refname="nginx return 200, 1 worker"
	other=nginx.w2 othername="nginx return 200, 2 workers"
	if [ -n "$m2" ] && { [ -z "$m1" ] || awk -v a="$m1" -v b="$m2" 'BEGIN { exit !(b > a) }'; }; then
		ref=nginx.w2 refname="nginx return 200, 2 workers"
		other=nginx.w1 othername="nginx return 200, 1 worker"
	fi
	table_head "http: medians of $runs_done run(s) of ${wrk_seconds} s; min and max over the same runs" \
		"wrk -t1 -c50 (keep-alive) on 127.0.0.1; forkpoold --workers 2, a fresh server each run;" \
		"apply = POST /v1/apply?wait=5 {\"task\":\"square\",\"args\":7}, answered when done." \
		"Reference: the better nginx configuration of this run (the ceiling). ratio = median /" \
		"reference median. Targets are reported, never asserted."
	for i in "${!http_backends[@]}"; do
		b=${http_backends[$i]}
		name=${http_backend_names[$i]}
		row "[$name] HTTP apply square" "fp.$b.apply" rate req/s "$refname" "$ref" rate 0.5
		row "" "fp.$b.apply" rate "" "$othername" "$other" rate
		row "" "fp.$b.apply" rate "" "[$name] GET /v1/health" "fp.$b.health" rate
	done
	for i in "${!http_backends[@]}"; do
		b=${http_backends[$i]}
		name=${http_backend_names[$i]}
		row "[$name] GET /v1/health" "fp.$b.health" rate req/s "$refname" "$ref" rate
	done
	for i in "${!http_backends[@]}"; do
		[ "${http_backends[$i]}" = uring ] || continue
		for j in "${!http_backends[@]}"; do
			[ "${http_backends[$j]}" = epoll ] || continue
			row "io_uring/epoll HTTP apply" fp.uring.apply rate req/s \
				"[${http_backend_names[$j]}] HTTP apply square" fp.epoll.apply rate 1.1
			row "io_uring/epoll GET /v1/health" fp.uring.health rate req/s \
				"[${http_backend_names[$j]}] GET /v1/health" fp.epoll.health rate
		done
	done
	row "nginx return 200, 1 worker" nginx.w1 rate req/s
	row "nginx return 200, 2 workers" nginx.w2 rate req/s
}
