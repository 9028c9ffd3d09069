# shellcheck shell=bash disable=SC2154,SC2034
# suite: kv        shared-value increments from tasks: N `incr` items (one fp_kv_incr round trip each) through forkpoold's map under each backend, and the latency a call adds, against multiprocessing.Manager().dict() increments under a Manager().Lock() (tests/bench/kv_bench.py)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Both sides do the same thing: N increments of one shared counter from 2 processes (forkpoold's
# 2 workers; 2 Python processes), each one atomic, the counter checked to end at exactly N.
# forkpool's figure is end to end over HTTP (a fresh forkpoold per run), so it includes each
# item's dispatch; the same map of `square` beside it gives the latency the call itself adds.

kv_runs=3
kv_budget=150
if [ "$quick" -eq 1 ]; then
	kv_n=20000
else
	kv_n=100000
fi
kv_py=tests/bench/kv_bench.py

kv_header() {
	echo "== kv: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

kv_prepare() {
	fpd_backends_probe || return 1
	echo "   backends: ${fpd_backend_names[*]}"
}

kv_rep() {
	local b
	for b in "${fpd_backends[@]}"; do
		if fpd_start_for "fp.$b.kv" "$b"; then
			run "fp.$b.kv" "$python" "$kv_py" forkpool "$port" "$kv_n"
		fi
		server_stop
	done
	run py.manager "$python" "$kv_py" manager "$kv_n"
}

kv_table() {
	local i b name
	table_head "kv: medians of $runs_done run(s); min and max over the same runs" \
		"$kv_n increments of one key from 2 workers: forkpoold map of \`incr\` (HTTP, end to end)" \
		"against 2 processes on a multiprocessing.Manager().dict() under a Manager().Lock()." \
		"added latency = (incr map - square map seconds) / (N / 2): what one call adds to a task." \
		"Targets are reported, never asserted."
	for i in "${!fpd_backends[@]}"; do
		b=${fpd_backends[$i]}
		name=${fpd_backend_names[$i]}
		row "[$name] task increments" "fp.$b.kv" rate ops/s \
			"Manager().dict() + Lock" py.manager rate 10
		row "[$name] latency a call adds" "fp.$b.kv" added_us us
	done
	row "Manager().dict() + Lock" py.manager rate ops/s
}
