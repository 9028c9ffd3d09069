# shellcheck shell=bash disable=SC2154,SC2034
# suite: cluster   forkpoold nodes through Redis (issue 15): the HTTP NDJSON map of trivial `square` and of `spin 0.2` items and apply round trips, on one node without Redis, one node with Redis, two nodes with 1 then 2 workers each; throughput, each node's share, Redis commands per item (INFO commandstats), apply p50
# Sourced by scripts/bench after tests/bench/lib.sh, which says how a suite is written.
#
# Each measurement is tests/bench/cluster_bench.py: its own redis-server (127.0.0.1, a free port,
# no persistence) and fresh forkpoold nodes, stopped by pid; the map submitted on the first node
# and its results read there (input order), every result checked; the share of items each node
# ran from forkpool_cluster_items_run_total; Redis's command calls before and after the map; 200
# applies one after the other for the round trip. All processes share this machine's CPUs: two
# nodes of two workers are four workers, two masters, Redis and the client on two cores.

bench_packages+=(redis-server)
cluster_runs=3
cluster_budget=300
if [ "$quick" -eq 1 ]; then
	cluster_sq=50000
	cluster_spin=2000
else
	cluster_sq=200000
	cluster_spin=10000
fi
cluster_py=tests/bench/cluster_bench.py
cluster_backend=

cluster_header() {
	echo "== cluster: $(nproc) CPUs, $(uname -sr), $(redis-server --version | cut -d' ' -f1-3), forkpool $(fp_version)"
}

cluster_prepare() {
	command -v redis-server >/dev/null || { echo "   no redis-server"; return 1; }
	fpd_backends_probe || return 1
	cluster_backend=${fpd_backends[0]}
	echo "   backend: ${fpd_backend_names[0]}"
}

# cluster_one KEY NODES WORKERS TASK ARG N [--no-redis]
cluster_one() {
	local key=$1
	shift
	run "$key" "$python" "$cluster_py" "$forkpoold" "$cluster_backend" "$@"
}

cluster_rep() {
	cluster_one sq.alone 1 2 square 0 "$cluster_sq" --no-redis
	cluster_one sq.redis 1 2 square 0 "$cluster_sq"
	cluster_one sq.two1 2 1 square 0 "$cluster_sq"
	cluster_one sq.two2 2 2 square 0 "$cluster_sq"
	cluster_one spin.alone 1 2 spin 0.2 "$cluster_spin" --no-redis
	cluster_one spin.redis 1 2 spin 0.2 "$cluster_spin"
	cluster_one spin.two1 2 1 spin 0.2 "$cluster_spin"
	cluster_one spin.two2 2 2 spin 0.2 "$cluster_spin"
}

cluster_table() {
	table_head "cluster: medians of $runs_done run(s); min and max over the same runs" \
		"HTTP NDJSON map on the first node, results read back there: $cluster_sq items of square," \
		"$cluster_spin of spin 0.2; 200 applies (square 7) one at a time. alone: one node, 2 workers," \
		"no --cluster; redis: the same node with --cluster; two1, two2: two nodes of 1 (2) workers." \
		"share: the items node 1 (the one submitted to) ran, in percent; its due is 50. Redis's commands" \
		"include the nodes' heartbeats meanwhile. Targets reported, never asserted."
	row "square map, alone" sq.alone rate items/s
	row "square map, 1 node + Redis" sq.redis rate items/s "alone" sq.alone rate 0.5
	row "square map, 2 nodes x 1 worker" sq.two1 rate items/s "alone" sq.alone rate 0.5
	row "square map, 2 nodes x 2 workers" sq.two2 rate items/s "alone" sq.alone rate 0.5
	row "spin map, alone" spin.alone rate items/s
	row "spin map, 1 node + Redis" spin.redis rate items/s "alone" spin.alone rate
	row "spin map, 2 nodes x 1 worker" spin.two1 rate items/s "alone" spin.alone rate
	row "spin map, 2 nodes x 2 workers" spin.two2 rate items/s "alone" spin.alone rate
	row "node 1's share, spin, 2 x 1 (50%)" spin.two1 share1_pct %
	row "node 1's share, spin, 2 x 2 (50%)" spin.two2 share1_pct %
	row "node 1's share, square, 2 x 1 (50%)" sq.two1 share1_pct %
	row "Redis commands per 1,000 items, square" sq.redis cmds_per_1k cmds
	row "Redis commands per 1,000 items, spin" spin.two1 cmds_per_1k cmds
	row "apply p50, alone" sq.alone apply_p50_ms ms
	row "apply p50, 1 node + Redis" sq.redis apply_p50_ms ms "alone" sq.alone apply_p50_ms "<=3"
	row "apply p50, 2 nodes x 1 worker" sq.two1 apply_p50_ms ms "alone" sq.alone apply_p50_ms "<=3"
}
