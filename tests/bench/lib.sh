# shellcheck shell=bash disable=SC2034,SC2154
# The machinery every benchmark suite shares; sourced by scripts/bench, never run by itself.
#
# How a suite defines itself
# --------------------------
# A suite NAME is the file tests/bench/suite-NAME.sh (NAME: lower-case letters, digits, `_`).
# scripts/bench finds it by that name: `scripts/bench NAME` runs it and `scripts/bench all` runs
# it too; nothing else needs editing. The file is sourced after this one and defines:
#
#   # suite: NAME   one line for --help     (a comment line, read by scripts/bench's usage)
#   bench_packages+=(pkg ...)                Debian packages it needs (installed before the build)
#   NAME_budget=SECONDS                      optional: its share of time (default BENCH_BUDGET)
#   NAME_runs=N                              optional: its repetitions unless --runs or --quick
#                                            (at least 3)
#   NAME_header()    optional: prints the "== NAME: <versions>" line of what it compares
#   NAME_prepare()   optional: probes what can run here (backends, servers); returns non-zero
#                    when nothing can, and the suite is then counted as failed
#   NAME_rep()       one repetition of every measurement of the suite, each one through
#                      run KEY CMD...            a program printing one "result k=v ..." line, or
#                      wrk_run KEY URL [LUA]     wrk against the server started with fpd_start
#                                                (fpd_start_for KEY records KEY as failed when
#                                                forkpoold does not start), nginx_start or the
#                                                suite's own *_start
#                    (or through record KEY k=v... after checking a result itself); a failed
#                    measurement is recorded with `failed KEY WHY` and fails the whole run
#   NAME_table()     the table: table_head "title" "explanation lines...", then one `row` a
#                    figure (see row below: median, min, max, unit, reference, its median,
#                    ratio, target)
#
# Sizes should depend on $quick (1 for --quick). Variables a suite may read: runs (repetitions
# asked), runs_done (repetitions made, in NAME_table), quick, builddir, python, tmp (a scratch
# directory removed at exit), forkpoold, bench_pool, fork_floor, and after fp_backends_probe the
# arrays fp_backends (uring/epoll as FORKPOOL_LOOP spells them) and fp_backend_names (as
# fp_loop_backend_name() does); after fpd_backends_probe, the same for forkpoold in fpd_backends
# and fpd_backend_names.
#
# Repetitions are interleaved: each one measures everything of the suite once, so drift on a
# shared machine spreads over every figure instead of landing on one. No repetition is started
# that would not finish inside the suite's budget, judging by the ones before; at least one is
# always made. Targets are printed, never asserted: the exit status says only whether every
# measurement ran and its results were right.
#
# Every figure a table prints is also written, one line each, to $bench_results_file
# (build-bench/bench-results.txt, rewritten by each run of scripts/bench) as
#   suite=S key=K field=F unit=U median=M min=A max=B n=N [ref=RK ref_field=RF ref_median=RM
#     ratio=X] [target=>=T|<=T met=yes|no] | NAME | REFNAME
# (k=v fields without spaces, then the row's name and its reference's, as printed, after " | ";
# a continuation row repeats its measurement's name) for the plot and BENCHMARKS.md.

# Upper bound on one measurement, in seconds; `timeout` kills its whole process group after it.
limit=180

builddir=build-bench
bench_pool=$builddir/tests/bench/bench-pool
fork_floor=$builddir/tests/bench/fork-floor
forkpoold=$builddir/server/forkpoold
pool_py=tests/bench/pool_bench.py
bench_results_file=$builddir/bench-results.txt
# Debian's python3 (scripts/deps installs it), the one Debian's Celery and uWSGI run on; else the
# interpreter itself, not a version manager's shim in front of it.
if [ -x /usr/bin/python3 ]; then
	python=/usr/bin/python3
else
	python=$(python3 -c 'import sys; print(sys.executable)')
fi

bench_packages=()
tmp=
results=
failures=
child=
server=
port=
bench_suite=

# bench_init : the scratch directory and the exit trap that stops whatever is still running.
bench_init() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/fp-bench.XXXXXX")
	results=$tmp/results
	failures=$tmp/failures
	: >"$results"
	: >"$failures"
	trap bench_cleanup EXIT
	trap 'echo "bench: interrupted" >&2; exit 130' INT TERM
}

# Functions bench_cleanup calls at exit, before removing $tmp: a suite that starts servers of its
# own (tests/bench/peers-servers.sh) adds the one that stops them.
bench_cleanup_hooks=()

bench_cleanup() {
	local hook
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		# timeout passes the signal on to the benchmark's process group, workers included.
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	server_stop
	for hook in "${bench_cleanup_hooks[@]}"; do
		"$hook" || true
	done
	[ -n "$tmp" ] && rm -rf "$tmp"
}

# bench_build : the packages every selected suite asked for, then a release build of its own.
bench_build() {
	# shellcheck source=scripts/deps
	. scripts/deps
	fp_install_packages "${FORKPOOL_PACKAGES[@]}" "${bench_packages[@]}"
	if [ ! -f "$builddir/build.ninja" ]; then
		meson setup "$builddir" --buildtype=release -Dtests=true
	else
		meson configure "$builddir" -Dbuildtype=release -Dtests=true >/dev/null
	fi
	ninja -C "$builddir"
	mkdir -p "$builddir"
	: >"$bench_results_file"
}

# bench_machine : the machine and the versions every suite shares, for the run's first lines.
bench_machine() {
	local cpu mem debian
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	debian=$(cat /etc/debian_version 2>/dev/null || echo '?')
	echo "== machine: ${cpu:-?}, $(nproc) CPUs, $mem RAM, $(uname -sr), Debian $debian"
	echo "   $(cc --version | head -n 1), liburing $(pkg-config --modversion liburing 2>/dev/null || echo -)," \
		"libuv $(pkg-config --modversion libuv 2>/dev/null || echo -), $("$python" -V 2>&1) ($python)," \
		"$(curl -V | head -n 1 | cut -d' ' -f1-2), forkpool $(fp_version)"
}

# forkpool's commit, with "+changes" when the engine or the daemon differ from it.
fp_version() {
	echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- pool include server 2>/dev/null || echo '+changes')"
}

# --- measurements --------------------------------------------------------------------------

# failed KEY WHY : a measurement that did not run or gave a wrong result; the run will fail.
failed() {
	echo "$1" >>"$failures"
	printf '  %-26s FAILED (%s)\n' "$1" "$2"
}

# record KEY k=v... : a result the suite checked itself, stored under KEY.
record() {
	local key=$1
	shift
	echo "$key $*" >>"$results"
	printf '  %-26s %s\n' "$key" "$(summary_of "result $*")"
}

# run KEY CMD... : one measurement; its result line is stored under KEY. The command must exit 0
# and print a line starting "result " (the k=v fields after it are what rows read).
run() {
	local key=$1 rc=0 line
	shift
	timeout -k 5 "$limit" "$@" >"$tmp/out" 2>"$tmp/err" &
	child=$!
	wait "$child" || rc=$?
	child=
	line=$(grep -m1 '^result ' "$tmp/out" || true)
	if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
		failed "$key" "exit $rc$([ "$rc" -eq 124 ] && echo ", over ${limit}s")"
		sed 's/^/      /' "$tmp/err" | tail -n 5
		return 0
	fi
	echo "$key ${line#result }" >>"$results"
	printf '  %-26s %s\n' "$key" "$(summary_of "$line")"
}

# The figure a result line is about, for the progress lines.
summary_of() {
	awk '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		if ("summary" in f) { s = f["summary"]; gsub(/_/, " ", s); print s }
		else if ("p50_us" in f) printf "p50 %s us, p99 %s us\n", f["p50_us"], f["p99_us"]
		else if ("rate" in f) printf "%.0f /s in %.3f s\n", f["rate"], f["seconds"]
		else if ("outcome" in f) { o = f["outcome"]; gsub(/_/, " ", o); printf "%s (%.3f s)\n", o, f["seconds"] }
		else { sub(/^result /, ""); print }
	}' <<<"$1"
}

# stats KEY FIELD : "median min max n" over the runs stored under KEY, or nothing.
stats() {
	awk -v key="$1" -v field="$2" '$1 == key {
		for (i = 2; i <= NF; i++) if (index($i, field "=") == 1) print substr($i, length(field) + 2)
	}' "$results" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) exit
			m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			print m, v[1], v[NR], NR
		}'
}

# --- the table -----------------------------------------------------------------------------

# table_head TITLE [LINE...] : a table's title, its explanation lines and its column heads.
table_head() {
	local l
	echo
	echo "== $1"
	shift
	for l in "$@"; do
		echo "   $l"
	done
	echo
	printf '%-40s %10s %10s %10s %-8s %-32s %10s %8s  %s\n' \
		name median min max unit reference "ref median" ratio target
	printf '%.0s-' {1..150}
	echo
}

# row NAME KEY FIELD UNIT [REFNAME REFKEY REFFIELD [TARGET]] : one line of the table, with the
# ratio of the medians and, when TARGET is given, whether it is met. TARGET is the least ratio
# wanted ("10" or ">=10"), or for figures where lower is better the most ("<=0.5").
# An empty NAME makes a continuation line: the previous measurement against another reference.
# Every row is also written to $bench_results_file.
row_last_name=
row_last_unit=
row() {
	local name=$1 key=$2 field=$3 unit=$4 refname=${5:-} refkey=${6:-} reffield=${7:-} target=${8:-}
	local s r=""
	s=$(stats "$key" "$field")
	[ -n "$refkey" ] && r=$(stats "$refkey" "$reffield")
	[ -n "$name" ] && row_last_name=$name row_last_unit=$unit
	awk -v name="$name" -v s="$s" -v unit="$unit" -v refname="$refname" -v refkey="$refkey" \
		-v r="$r" -v target="$target" -v suite="$bench_suite" -v key="$key" -v field="$field" \
		-v reffield="$reffield" -v lastname="$row_last_name" -v lastunit="$row_last_unit" -v out="$bench_results_file" '
		function num(x) { return x >= 1000 ? sprintf("%.0f", x) : sprintf("%.1f", x) }
		function word(x) { gsub(/[ \t|]+/, "_", x); return x == "" ? "-" : x }
		BEGIN {
			split(s, a, " "); split(r, b, " ")
			med = s == "" ? "failed" : num(a[1]); lo = s == "" ? "-" : num(a[2]); hi = s == "" ? "-" : num(a[3])
			cont = name == ""
			if (cont) { name = "      and against"; med = ""; lo = ""; hi = "" }
			refmed = refkey == "" ? "" : (r == "" ? "failed" : num(b[1]))
			ratio = ""; x = ""
			if (refkey != "") {
				if (s != "" && r != "" && b[1] > 0) { x = a[1] / b[1]; ratio = sprintf(x >= 0.1 ? "%.2fx" : "%.2gx", x) }
				else ratio = "-"
			}
			line = sprintf("%-40s %10s %10s %10s %-8s %-32s %10s %8s", name, med, lo, hi,
				cont ? "" : unit, refname, refmed, ratio)
			met = ""
			if (target != "") {
				op = ">="; t = target
				if (t ~ /^<=/) { op = "<="; t = substr(t, 3) } else if (t ~ /^>=/) t = substr(t, 3)
				line = line sprintf("  %s %sx", op, t)
				if (x != "") {
					met = (op == ">=" ? x >= t + 0 : x <= t + 0) ? "yes" : "no"
					line = line sprintf(" (%s)", met == "yes" ? "met" : "not met")
				}
			}
			sub(/ +$/, "", line)
			print line
			if (out == "" || s == "") exit
			rec = sprintf("suite=%s key=%s field=%s unit=%s median=%s min=%s max=%s n=%s", suite,
				key, field, word(lastunit), a[1], a[2], a[3], a[4])
			if (refkey != "" && x != "")
				rec = rec sprintf(" ref=%s ref_field=%s ref_median=%s ratio=%.4f",
					refkey, reffield, b[1], x)
			if (met != "") rec = rec sprintf(" target=%s%s met=%s", op, t, met)
			print rec " | " lastname " | " refname >> out
		}'
}

# --- forkpool backends ---------------------------------------------------------------------

fp_backends=()
fp_backend_names=()
fp_backends_probed=0

# fp_backends_probe : which event-loop backends the embedded pool can run here (once per run).
# Returns non-zero when none can.
fp_backends_probe() {
	local b line
	if [ "$fp_backends_probed" -eq 0 ]; then
		fp_backends_probed=1
		for b in uring epoll; do
			if line=$(FORKPOOL_LOOP=$b timeout -k 5 60 "$bench_pool" rtt 10 2>"$tmp/err") &&
				[[ $line == result* ]]; then
				fp_backends+=("$b")
				line=${line#*backend=}
				fp_backend_names+=("${line%% *}")
			else
				echo "bench: backend $b is not available here, skipped:" >&2
				sed 's/^/    /' "$tmp/err" | tail -n 3 >&2
			fi
		done
	fi
	[ "${#fp_backends[@]}" -gt 0 ]
}

# --- servers -------------------------------------------------------------------------------
# One server at a time, its pid in $server, its port in $port; each started under setsid so it
# leads a process group that server_stop can kill whole.

# server_stop : stops $server by its pid: SIGTERM (forkpoold drains and reaps its workers, nginx's
# master stops its own), then after 5 s SIGKILL to its process group, so no worker outlives it.
server_stop() {
	local i
	[ -n "$server" ] || return 0
	kill -TERM "$server" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$server" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$server" 2>/dev/null; then
		echo "bench: server $server ignored SIGTERM for 5 s; killing its process group" >&2
		kill -KILL -- "-$server" 2>/dev/null || kill -KILL "$server" 2>/dev/null || true
	fi
	wait "$server" 2>/dev/null || true
	server=
}

# free_port : a port of 127.0.0.1 nobody listens on right now (bound to 0 and closed, so another
# process may take it before the caller does: callers retry).
free_port() {
	"$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_of_log FILE : the port forkpoold printed in its "listening on 127.0.0.1:PORT" line.
port_of_log() {
	sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1
}

# wait_http URL : waits up to 5 s for URL to answer 200, while the server is alive.
wait_http() {
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$server" 2>/dev/null || return 1
		[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

# fpd_start BACKEND [forkpoold options...] : starts forkpoold (2 workers unless the options say
# otherwise) on 127.0.0.1:0, its log in $tmp/fpd.log; sets server and port. With fpd_nofile set,
# it starts with RLIMIT_NOFILE (soft and hard) set to that; forkpoold raises its own soft limit only
# up to the hard one.
fpd_nofile=
fpd_start() {
	local i b=$1
	shift
	: >"$tmp/fpd.log"
	(
		if [ -n "$fpd_nofile" ]; then ulimit -n "$fpd_nofile" || exit 1; fi
		exec setsid "$forkpoold" --listen 127.0.0.1:0 --workers 2 --loop "$b" --log-level info "$@" \
			2>"$tmp/fpd.log" >/dev/null
	) &
	server=$!
	port=
	for ((i = 0; i < 50; i++)); do
		port=$(port_of_log "$tmp/fpd.log")
		[ -n "$port" ] && break
		kill -0 "$server" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$port" ] && wait_http "http://127.0.0.1:$port/v1/health"
}

# fpd_start_for KEY BACKEND [forkpoold options...] : fpd_start, and when forkpoold does not
# start, KEY is recorded as failed with the tail of forkpoold's log; returns non-zero then.
fpd_start_for() {
	local key=$1
	shift
	fpd_start "$@" && return 0
	failed "$key" "forkpoold did not start"
	sed 's/^/      /' "$tmp/fpd.log" | tail -n 5
	return 1
}

# fpd_backends_probe : which backends forkpoold starts under here (once per run), in the arrays
# fpd_backends (as --loop spells them) and fpd_backend_names (as GET /v1/health names them).
# Returns non-zero when none can.
fpd_backends_probed=0
fpd_backends=()
fpd_backend_names=()
fpd_backends_probe() {
	local b name
	if [ "$fpd_backends_probed" -eq 0 ]; then
		fpd_backends_probed=1
		for b in uring epoll; do
			if fpd_start "$b"; then
				name=$(curl -s -m 5 "http://127.0.0.1:$port/v1/health" |
					sed -n 's/.*"backend":"\([^"]*\)".*/\1/p')
				fpd_backends+=("$b")
				fpd_backend_names+=("${name:-$b}")
			else
				echo "bench: forkpoold --loop $b did not start here, skipped:" >&2
				sed 's/^/    /' "$tmp/fpd.log" | tail -n 3 >&2
			fi
			server_stop
		done
	fi
	[ "${#fpd_backends[@]}" -gt 0 ]
}

# nginx_start WORKERS [log] : nginx `return 200 "ok\n"` as a foreground process with a generated
# config in its own prefix directory, on a free port of 127.0.0.1; sets server and port. When
# another process takes the port first nginx fails, and another port is tried. With `log`, nginx
# writes an access line a request as forkpoold does at its default level, through a 64 KiB buffer
# (nginx's own way to keep a write(2) off every request; forkpoold batches its lines too);
# without, `access_log off`.
nginx_start() {
	local dir=$tmp/nginx attempt access="access_log off;"
	[ "${2:-}" = log ] && access="access_log $dir/logs/access.log combined buffer=64k;"
	for ((attempt = 1; attempt <= 3; attempt++)); do
		rm -rf "$dir"
		mkdir -p "$dir/logs"
		port=$(free_port)
		# keepalive_requests: nginx would otherwise close each connection after 1000 requests,
		# which forkpoold does not do; both keep every connection for the whole run.
		cat >"$dir/nginx.conf" <<NGINX
worker_processes $1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
	$access
	keepalive_requests 1000000;
	client_body_temp_path $dir/client_body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	server {
		listen 127.0.0.1:$port;
		location / { return 200 "ok\n"; }
	}
}
NGINX
		setsid nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -g 'daemon off;' \
			>/dev/null 2>"$dir/stderr" &
		server=$!
		wait_http "http://127.0.0.1:$port/" && return 0
		cat "$dir/stderr" "$dir/logs/error.log" >"$tmp/err" 2>/dev/null || true
		server_stop
	done
	return 1
}

# nginx_measure WORKERS [log] : wrk_run against a fresh nginx_start WORKERS [log], stored under
# nginx.wWORKERS, or nginx.wWORKERS.log with its access log (the ceilings the HTTP suites compare
# with); the server is stopped after.
nginx_measure() {
	local key=nginx.w$1${2:+.$2}
	if nginx_start "$@"; then
		wrk_run "$key" "http://127.0.0.1:$port/"
	else
		failed "$key" "nginx did not start"
		sed 's/^/      /' "$tmp/err" | tail -n 5
	fi
	server_stop
}

# wrk_run KEY URL [LUA] : one wrk run of wrk_seconds with the options in the array wrk_args
# against the running server; its rate is stored under KEY. wrk's counts of statuses >= 400 and
# of socket errors (connect, read, write, timeout) must be zero and it must have completed
# requests, or the run fails.
wrk_seconds=3
wrk_args=(-t1 -c50)
wrk_run() {
	local key=$1 url=$2 rc=0 line n s rate bad errs
	local args=("${wrk_args[@]}" "-d${wrk_seconds}s")
	[ $# -ge 3 ] && args+=(-s "$3")
	timeout -k 5 $((wrk_seconds + 30)) wrk "${args[@]}" "$url" >"$tmp/out" 2>"$tmp/err" &
	child=$!
	wait "$child" || rc=$?
	child=
	line=$(awk '
		/ requests in / { n = $1; s = $4; sub(/s,?$/, "", s) }
		/^Requests\/sec:/ { rate = $2 }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errs += $i + 0 }
		END { printf "%d %s %s %d %d\n", n, s == "" ? "-" : s, rate == "" ? "-" : rate, bad, errs }' "$tmp/out")
	read -r n s rate bad errs <<<"$line"
	if [ "$rc" -ne 0 ] || [ "$rate" = - ] || [ "$n" -eq 0 ] || [ "$bad" -ne 0 ] || [ "$errs" -ne 0 ]; then
		failed "$key" "wrk exit $rc, $n request(s), $bad status >= 400, $errs socket error(s)"
		cat "$tmp/out" "$tmp/err" | sed 's/^/      /' | tail -n 8
		return 0
	fi
	echo "$key rate=$rate seconds=$s requests=$n" >>"$results"
	printf '  %-26s %.0f req/s (%s requests in %s s)\n' "$key" "$rate" "$n" "$s"
}

# --- the driver ----------------------------------------------------------------------------

# bench_run_suite NAME : header, probe, interleaved repetitions inside the budget, the table.
bench_run_suite() {
	local name=$1 rep start now took runs_done=0 sbudget runs=$runs
	bench_suite=$name
	# A suite's table reads only its own repetitions: suites measure some of the same
	# things under the same keys (nginx, Pool.apply), and in `all` those would mix.
	: >"$results"
	sbudget=$budget
	if [ "$runs_given" -eq 0 ] && [ "$quick" -eq 0 ]; then
		local r="${name}_runs"
		[ -n "${!r:-}" ] && runs=${!r}
	fi
	if [ -z "${BENCH_BUDGET:-}" ]; then
		local v="${name}_budget"
		[ -n "${!v:-}" ] && sbudget=${!v}
	fi
	if declare -F "${name}_header" >/dev/null; then
		"${name}_header"
	else
		echo "== $name: $(nproc) CPUs, $(uname -sr), forkpool $(fp_version)"
	fi
	if declare -F "${name}_prepare" >/dev/null && ! "${name}_prepare"; then
		echo "bench: $name: nothing can be measured here" >&2
		echo "$name" >>"$failures"
		return 0
	fi
	echo "   $runs run(s); budget ${sbudget}s"
	start=$SECONDS
	for ((rep = 1; rep <= runs; rep++)); do
		now=$((SECONDS - start))
		if [ "$rep" -gt 1 ] && [ $((now + now / (rep - 1))) -gt "$sbudget" ]; then
			echo "bench: $name: stopping after $((rep - 1)) run(s): another would pass the ${sbudget}s budget" >&2
			break
		fi
		echo "-- $name run $rep/$runs (${now}s so far)"
		"${name}_rep"
		runs_done=$rep
	done
	took=$((SECONDS - start))
	"${name}_table"
	echo
	echo "   measured in ${took}s"
	bench_suite=
}
