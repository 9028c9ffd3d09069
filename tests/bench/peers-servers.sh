# shellcheck shell=bash disable=SC2034,SC2154
# Starting and stopping the systems forkpool is compared with: redis and a Celery worker,
# gearmand and its workers, uWSGI and gunicorn serving tests/bench/wsgi_square.py. Sourced by a
# suite (suite-peers.sh, and any other that wants one of these peers) after tests/bench/lib.sh.
#
# Several of these run at once (redis under Celery, gearmand under its workers), so unlike
# lib.sh's single $server they are kept by name: peer_start NAME starts one under setsid, so it
# leads a process group of its own, and peer_stop NAME stops it by its pid - SIGTERM, then after
# 5 s SIGKILL to its whole group, so no worker outlives it. peers_stop_all stops every one still
# running, last started first, and runs at exit through lib.sh's bench_cleanup_hooks. Every peer
# listens on 127.0.0.1 on a port picked free (lib.sh's free_port); another process may take it
# first, so each *_start tries up to 3 ports. Each *_start returns non-zero, with the reason in
# $tmp/err, when its peer did not come up.

# Debian's own interpreter: python3-celery, gunicorn and uwsgi-plugin-python3 are installed for
# it, whatever python3 comes first in PATH.
sys_python=/usr/bin/python3
celery_py=tests/bench/celery_bench.py
wsgi_app=tests/bench/wsgi_square.py
gearman_worker=$builddir/tests/bench/gearman-worker
gearman_client=$builddir/tests/bench/gearman-client

declare -A peer_pids=()
peer_order=()
bench_cleanup_hooks+=(peers_stop_all)

# peer_start NAME LOG CMD... : CMD in the background under setsid, its output in LOG.
peer_start() {
	local name=$1 log=$2
	shift 2
	setsid "$@" >"$log" 2>&1 </dev/null &
	peer_pids[$name]=$!
	peer_order+=("$name")
}

peer_alive() {
	[ -n "${peer_pids[$1]:-}" ] && kill -0 "${peer_pids[$1]}" 2>/dev/null
}

# peer_stop NAME : SIGTERM to its pid, SIGKILL to its process group after 5 s.
peer_stop() {
	local pid=${peer_pids[$1]:-} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "bench: $1 (pid $pid) ignored SIGTERM for 5 s; killing its process group" >&2
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	# Its workers, if the leader left without them: they share its group.
	kill -KILL -- "-$pid" 2>/dev/null || true
	unset "peer_pids[$1]"
}

peers_stop_all() {
	local i
	for ((i = ${#peer_order[@]} - 1; i >= 0; i--)); do
		peer_stop "${peer_order[$i]}"
	done
	peer_order=()
}

# peer_wait NAME SECONDS CMD... : until CMD succeeds, while NAME is alive, at most SECONDS.
peer_wait() {
	local name=$1 i tries=$(($2 * 10))
	shift 2
	for ((i = 0; i < tries; i++)); do
		peer_alive "$name" || return 1
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# tcp_open PORT : something accepts connections on 127.0.0.1:PORT.
tcp_open() {
	# shellcheck disable=SC2016 # $0 is expanded by the inner shell: the port.
	timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0' "$1" 2>/dev/null
}

# peer_failed NAME LOG WHAT : the reason a start failed, in $tmp/err; stops NAME.
peer_failed() {
	{
		echo "$3"
		tail -n 5 "$2" 2>/dev/null
	} >"$tmp/err"
	peer_stop "$1"
}

# --- redis and Celery ----------------------------------------------------------------------

# redis_start NAME : redis-server on a free port, no persistence (no RDB snapshots, no AOF), its
# working directory a fresh one under $tmp; sets redis_port and redis_url.
redis_start() {
	local name=$1 dir=$tmp/$1 attempt
	for ((attempt = 1; attempt <= 3; attempt++)); do
		rm -rf "$dir"
		mkdir -p "$dir"
		redis_port=$(free_port)
		peer_start "$name" "$dir/log" redis-server --bind 127.0.0.1 --port "$redis_port" \
			--save '' --appendonly no --dir "$dir" --daemonize no --loglevel warning
		if peer_wait "$name" 5 redis-cli -p "$redis_port" ping; then
			redis_url=redis://127.0.0.1:$redis_port/0
			return 0
		fi
		peer_failed "$name" "$dir/log" "redis-server did not answer PING on port $redis_port"
	done
	return 1
}

# celery_start NAME REDIS_URL [TASKS [PYTHONPATH]] : a Celery worker of tests/bench/celery_bench.py
# (--pool prefork --concurrency 2) on the redis at REDIS_URL, serving TASKS (comma-separated
# MODULE:FUNCTION, default celery_bench:square; PYTHONPATH is where their modules are), and waits
# until it has run one task. Gossip, mingle and heartbeats are switched off (--without-*): they
# are broker traffic about the cluster, not about tasks, and events stay off as by default.
# The client must be given the same FP_BENCH_REDIS_URL and FP_BENCH_CELERY_TASKS; celery_env
# holds them, as `env` arguments.
celery_start() {
	local name=$1 url=$2 tasks=${3:-celery_bench:square} path=tests/bench dir=$tmp/$1
	[ -n "${4:-}" ] && path+=":$4"
	rm -rf "$dir"
	mkdir -p "$dir"
	celery_env=(env "FP_BENCH_REDIS_URL=$url" "FP_BENCH_CELERY_TASKS=$tasks" "PYTHONPATH=$path")
	peer_start "$name" "$dir/log" "${celery_env[@]}" "$sys_python" -m celery -A celery_bench \
		worker --pool prefork --concurrency 2 --without-gossip --without-mingle \
		--without-heartbeat --loglevel WARNING --hostname "fp-bench-$name@%h"
	# The first task waits in redis until the worker consumes it: the worker is up and right.
	if ! timeout -k 5 60 "${celery_env[@]}" "$sys_python" "$celery_py" ready 45 \
		>/dev/null 2>"$dir/ready.err"; then
		cat "$dir/ready.err" >>"$dir/log"
		peer_failed "$name" "$dir/log" "the Celery worker ran no task within 45 s"
		return 1
	fi
	peer_alive "$name" || { peer_failed "$name" "$dir/log" "the Celery worker exited"; return 1; }
}

# --- gearmand ------------------------------------------------------------------------------

# gearmand_start NAME WORKERS : gearmand on a free port (its default in-memory queue, no
# persistence; its default 4 I/O threads) and WORKERS processes of tests/bench/gearman-worker,
# each one a peer named NAME.wI; waits until gearmand reports all of them able to run square.
# Sets gearmand_port.
gearmand_start() {
	local name=$1 n=$2 dir=$tmp/$1 attempt i
	if [ ! -x "$gearman_worker" ] || [ ! -x "$gearman_client" ]; then
		echo "the gearman worker and client were not built: libgearman-dev was not found when" \
			"build-bench/ was configured (meson setup --reconfigure build-bench)" >"$tmp/err"
		return 1
	fi
	for ((attempt = 1; attempt <= 3; attempt++)); do
		rm -rf "$dir"
		mkdir -p "$dir"
		gearmand_port=$(free_port)
		peer_start "$name" "$dir/log" gearmand --listen 127.0.0.1 --port "$gearmand_port" \
			--log-file stderr --pid-file "$dir/gearmand.pid" --verbose WARNING
		peer_wait "$name" 5 tcp_open "$gearmand_port" && break
		peer_failed "$name" "$dir/log" "gearmand did not listen on port $gearmand_port"
	done
	peer_alive "$name" || return 1
	for ((i = 1; i <= n; i++)); do
		peer_start "$name.w$i" "$dir/worker$i.log" "$gearman_worker" 127.0.0.1 "$gearmand_port"
	done
	if ! timeout -k 5 30 "$gearman_client" ready 127.0.0.1 "$gearmand_port" square "$n" 20 \
		2>"$dir/ready.err"; then
		cat "$dir/ready.err" "$dir"/worker*.log >>"$dir/log"
		peer_failed "$name" "$dir/log" "gearmand did not report $n square worker(s)"
		for ((i = 1; i <= n; i++)); do peer_stop "$name.w$i"; done
		return 1
	fi
}

# gearmand_stop NAME WORKERS : the workers first, so none is left waiting for a server.
gearmand_stop() {
	local i
	for ((i = 1; i <= $2; i++)); do peer_stop "$1.w$i"; done
	peer_stop "$1"
}

# --- WSGI servers --------------------------------------------------------------------------

# wsgi_answers PORT : tests/bench/wsgi_square.py answers on PORT (any status will do: readiness).
wsgi_answers() {
	curl -s -o /dev/null -m 2 -X POST -d '{}' "http://127.0.0.1:$1/"
}

# uwsgi_start NAME : uWSGI with its master and 2 worker processes (no threads), serving
# tests/bench/wsgi_square.py on its native HTTP/1.1 socket (--http11-socket: keep-alive, no
# separate router process). --die-on-term: uWSGI 2.0 reloads on SIGTERM unless told to exit.
# Sets wsgi_port.
uwsgi_start() {
	local name=$1 dir=$tmp/$1 attempt
	for ((attempt = 1; attempt <= 3; attempt++)); do
		rm -rf "$dir"
		mkdir -p "$dir"
		wsgi_port=$(free_port)
		peer_start "$name" "$dir/log" uwsgi --plugin python3 --http11-socket "127.0.0.1:$wsgi_port" \
			--master --processes 2 --wsgi-file "$wsgi_app" --disable-logging --die-on-term
		peer_wait "$name" 10 wsgi_answers "$wsgi_port" && return 0
		peer_failed "$name" "$dir/log" "uWSGI did not answer on port $wsgi_port"
	done
	return 1
}

# gunicorn_start NAME : gunicorn with 2 sync workers (its default worker class: one request at a
# time per process, and the connection closed after each response), serving
# tests/bench/wsgi_square.py. Sets wsgi_port.
gunicorn_start() {
	local name=$1 dir=$tmp/$1 attempt
	for ((attempt = 1; attempt <= 3; attempt++)); do
		rm -rf "$dir"
		mkdir -p "$dir"
		wsgi_port=$(free_port)
		peer_start "$name" "$dir/log" "$sys_python" -m gunicorn --workers 2 --worker-class sync \
			--bind "127.0.0.1:$wsgi_port" --chdir tests/bench wsgi_square:application
		peer_wait "$name" 15 wsgi_answers "$wsgi_port" && return 0
		peer_failed "$name" "$dir/log" "gunicorn did not answer on port $wsgi_port"
	done
	return 1
}
