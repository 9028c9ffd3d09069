# shellcheck shell=bash disable=SC2154,SC2034
# suite: map       a map of 1,000,000 trivial `square` items, chunksize 1000: forkpool embedded (tests/bench/bench-pool.c) and over HTTP in the NDJSON form (tests/bench/map_http.py) under each backend, against Python's Pool.map and ProcessPoolExecutor.map (tests/bench/pool_bench.py)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Every system gets the same items 0..N-1, two workers (one per CPU here) and chunksize 1000;
# every result is checked against its item's square. The HTTP figure is end to end: the NDJSON
# body sent, the job run, every result streamed back to the client (curl), with a fresh forkpoold
# for each run.

map_runs=3
map_budget=150
if [ "$quick" -eq 1 ]; then
	map_n=200000
else
	map_n=1000000
fi
map_cs=1000
map_http_py=tests/bench/map_http.py

map_header() {
	echo "== map: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), $(curl -V | head -n 1 | cut -d' ' -f1-2), forkpool $(fp_version)"
}

map_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}"
}

map_rep() {
	local b
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.map" "$bench_pool" map "$map_n" "$map_cs"
	done
	for b in "${fp_backends[@]}"; do
		if fpd_start_for "fp.$b.httpmap" "$b"; then
			run "fp.$b.httpmap" "$python" "$map_http_py" "$port" "$map_n" "$map_cs"
		fi
		server_stop
	done
	run py.map "$python" "$pool_py" map "$map_n" "$map_cs"
	run py.ppemap "$python" "$pool_py" ppe-map "$map_n" "$map_cs"
}

map_table() {
	local i b name
	table_head "map: medians of $runs_done run(s); min and max over the same runs" \
		"$map_n items, chunksize $map_cs, 2 workers; HTTP: POST /v1/map?task=square (application/x-ndjson)" \
		"then GET /v1/jobs/ID/results streamed, timed end to end. ratio = median / reference median." \
		"Targets are reported, never asserted."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] embedded map" "fp.$b.map" rate items/s \
			"Python Pool.map" py.map rate 4
		row "" "fp.$b.map" rate "" "Python PPE.map" py.ppemap rate
		row "[$name] HTTP NDJSON map" "fp.$b.httpmap" rate items/s \
			"Python Pool.map" py.map rate 2
		row "" "fp.$b.httpmap" rate "" "Python PPE.map" py.ppemap rate
		row "" "fp.$b.httpmap" rate "" "[$name] embedded map" "fp.$b.map" rate
	done
	row "Python Pool.map" py.map rate items/s
	row "Python ProcessPoolExecutor.map" py.ppemap rate items/s
}
