# shellcheck shell=bash disable=SC2154
# suite: pipeline  a 3-stage pipeline of trivial tasks (square, echo, square) over 1,000,000 items through the embedded API (tests/bench/bench-pipeline.c) and through forkpoold over HTTP with NDJSON items (tests/bench/pipeline_http.py), under each backend, against the same pipeline in Python multiprocessing (tests/bench/pipeline_bench.py)
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.

if [ "$quick" -eq 1 ]; then
	pipeline_n=200000
else
	pipeline_n=1000000
fi
bench_pipeline=$builddir/tests/bench/bench-pipeline
pipeline_py=tests/bench/pipeline_bench.py
pipeline_http=tests/bench/pipeline_http.py

pipeline_header() {
	echo "== pipeline: $(nproc) CPUs, $(uname -sr), $("$python" -V 2>&1), forkpool $(fp_version)"
}

pipeline_prepare() {
	fp_backends_probe || return 1
	echo "   backends: ${fp_backend_names[*]}"
}

# One repetition: the embedded pipeline and forkpoold under each backend, then Python.
pipeline_rep() {
	local b
	for b in "${fp_backends[@]}"; do
		FORKPOOL_LOOP=$b run "fp.$b.pipeline" "$bench_pipeline" "$pipeline_n"
	done
	for b in "${fp_backends[@]}"; do
		if fpd_start_for "fpd.$b.pipeline" "$b"; then
			run "fpd.$b.pipeline" "$python" "$pipeline_http" "$port" "$pipeline_n"
		fi
		server_stop
	done
	run py.pipeline "$python" "$pipeline_py" "$pipeline_n"
	run py.pipeline5000 "$python" "$pipeline_py" "$pipeline_n" 5000
}

pipeline_table() {
	local i b name
	table_head "pipeline: medians of $runs_done run(s); min and max over the same runs" \
		"$pipeline_n items through square -> echo -> square, every output checked (sum and input index)." \
		"HTTP: POST NDJSON ?wait then GET the /results stream to its last byte, on one connection" \
		"(a plain-socket client; outputs parsed and checked after the clock). Python: a process" \
		"group per stage (one per CPU) joined by bounded Queues of batches of 1000 (or 5000) items." \
		"Targets are reported, never asserted."
	for i in "${!fp_backends[@]}"; do
		b=${fp_backends[$i]}
		name=${fp_backend_names[$i]}
		row "[$name] embedded pipeline" "fp.$b.pipeline" rate items/s \
			"Python multiprocessing, batch 1000" py.pipeline rate 3
		row "" "fp.$b.pipeline" rate "" "Python, batch 5000" py.pipeline5000 rate
		row "[$name] forkpoold HTTP pipeline" "fpd.$b.pipeline" rate items/s \
			"Python multiprocessing, batch 1000" py.pipeline rate 3
		row "" "fpd.$b.pipeline" rate "" "Python, batch 5000" py.pipeline5000 rate
	done
}
