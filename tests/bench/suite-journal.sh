# shellcheck shell=bash disable=SC2154,SC2034
# suite: journal   what --data-dir costs: the HTTP NDJSON map of 1,000,000 items and wrk's HTTP apply (c=50) with the journal (--fsync interval) against memory only in the same run, apply under --fsync always (req/s and fsyncs/s), recovery time of a 1M-item journal, journal bytes per item
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# The same forkpoold, two workers, a fresh server (and a fresh data directory) for every
# measurement, stopped by pid. The map is tests/bench/map_http.py's (items 0..N-1 as NDJSON,
# chunksize 1000, every result streamed back and checked); the apply is wrk -t1 -c50 with
# tests/bench/wrk-apply.lua, as the http suite runs it. Under --fsync always every answer waits for
# an fsync: forkpool_journal_fsyncs_total before and after wrk gives the fsyncs a second, and the
# answers per fsync say how much group commit batched. Recovery: forkpoold started on the data
# directory the map left (its JOB record of N items and their outcomes), timed from exec to
# GET /v1/health answering, which it does only after the replay.

bench_packages+=(wrk)
journal_runs=3
journal_budget=240
if [ "$quick" -eq 1 ]; then
	journal_n=200000
else
	journal_n=1000000
fi
journal_cs=1000
journal_map_py=tests/bench/map_http.py
journal_wrk_apply=tests/bench/wrk-apply.lua
journal_backend=

journal_header() {
	echo "== journal: $(nproc) CPUs, $(uname -sr), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(df -T "$tmp" | awk 'NR == 2 { print $2 }') under $tmp, forkpool $(fp_version)"
}

# The first backend forkpoold runs here (io_uring where it can): the journal's own cost is
# the question, not the backends' difference (the http and map suites measure that).
journal_prepare() {
	fpd_backends_probe || return 1
	journal_backend=${fpd_backends[0]}
	echo "   backend: ${fpd_backend_names[0]}; data directories under $tmp"
}

# journal_metric NAME : a sample of the running forkpoold's /metrics.
journal_metric() {
	curl -s -m 10 "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

journal_map() {
	local key=$1 b=$journal_backend
	shift
	if fpd_start_for "$key" "$b" "$@"; then
		run "$key" "$python" "$journal_map_py" "$port" "$journal_n" "$journal_cs"
	fi
	server_stop
}

journal_apply() {
	local key=$1 b=$journal_backend
	shift
	if fpd_start_for "$key" "$b" "$@"; then
		wrk_run "$key" "http://127.0.0.1:$port/v1/apply?wait=5" "$journal_wrk_apply"
	fi
	server_stop
}

journal_rep() {
	local dir=$tmp/journal-data b=$journal_backend t0 t1 f0 f1 a0 a1 size

	journal_map mem.map
	rm -rf "$dir"
	journal_map jr.map --data-dir "$dir"
	size=$(stat -c %s "$dir/journal" 2>/dev/null || echo 0)
	record jr.bytes per_item="$(awk -v s="$size" -v n="$journal_n" 'BEGIN { printf "%.1f", s / n }')" \
		summary="$size"_bytes_for_"$journal_n"_items

	# Recovery of what the map left: start to the first answer of /v1/health.
	t0=$(date +%s.%N)
	if fpd_start_for jr.recover "$b" --data-dir "$dir"; then
		t1=$(date +%s.%N)
		if grep -q "1 jobs recovered (1 finished" "$tmp/fpd.log"; then
			record jr.recover seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
				rate="$(awk -v a="$t0" -v b="$t1" -v n="$journal_n" 'BEGIN { printf "%.0f", n / (b - a) }')"
		else
			failed jr.recover "the map's job was not recovered finished"
			sed 's/^/      /' "$tmp/fpd.log" | tail -n 5
		fi
	fi
	server_stop
	rm -rf "$dir"

	journal_apply mem.apply
	journal_apply jr.apply --data-dir "$dir"
	rm -rf "$dir"
	if fpd_start_for jr.always "$b" --data-dir "$dir" --fsync always; then
		f0=$(journal_metric forkpool_journal_fsyncs_total)
		a0=$(journal_metric forkpool_jobs_submitted_total)
		t0=$(date +%s.%N)
		wrk_run jr.always "http://127.0.0.1:$port/v1/apply?wait=5" "$journal_wrk_apply"
		t1=$(date +%s.%N)
		f1=$(journal_metric forkpool_journal_fsyncs_total)
		a1=$(journal_metric forkpool_jobs_submitted_total)
		if [ -n "$f0" ] && [ -n "$f1" ] && [ "$f1" -gt "$f0" ]; then
			record jr.fsyncs rate="$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')" \
				per_fsync="$(awk -v a="$f0" -v b="$f1" -v x="$a0" -v y="$a1" 'BEGIN { printf "%.1f", (y - x) / (b - a) }')"
		else
			failed jr.fsyncs "no fsync counted under --fsync always"
		fi
	fi
	server_stop
	rm -rf "$dir"
}

journal_table() {
	table_head "journal: medians of $runs_done run(s); min and max over the same runs" \
		"forkpoold --workers 2, a fresh server and data directory each run. map: $journal_n items," \
		"chunksize $journal_cs, POST /v1/map (NDJSON) then the results streamed, end to end; apply:" \
		"wrk -t1 -c50 for ${wrk_seconds} s, POST /v1/apply?wait=5 square 7. Reference: the same without" \
		"--data-dir, in the same run. ratio = median / reference median. Targets are reported, never asserted."
	row "HTTP NDJSON map, journal (interval)" jr.map rate items/s "memory only" mem.map rate 0.85
	row "HTTP apply c=50, journal (interval)" jr.apply rate req/s "memory only" mem.apply rate 0.85
	row "HTTP apply c=50, --fsync always" jr.always rate req/s "memory only" mem.apply rate
	row "fsyncs a second under always" jr.fsyncs rate fsyncs/s
	row "answers per fsync under always" jr.fsyncs per_fsync answers
	row "recovery of a $journal_n-item journal" jr.recover seconds s
	row "" jr.recover rate items/s
	row "journal bytes per item (map)" jr.bytes per_item bytes
	row "HTTP NDJSON map, memory only" mem.map rate items/s
	row "HTTP apply c=50, memory only" mem.apply rate req/s
}
