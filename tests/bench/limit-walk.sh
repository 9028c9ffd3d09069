#!/usr/bin/env bash
# The dispatch cost of many single-item applies waiting on a full limit (issue 18), counted
# by callgrind so that a loaded machine does not matter:
#
#   tests/bench/limit-walk.sh BUILD-DIR N
#
# forkpoold under callgrind with --task-concurrency sleep=1; one `sleep 4000` apply takes the
# limit's place, N `sleep 0` applies queue behind it (one queue entry each), then run one at
# a time. Prints the instructions fp__chunk_plan (the queue walk) spent in all, inclusive:
# linear in N when dispatch skips the entries it knows held back, quadratic when it walks
# them all on every dispatch. Compare N and 4N.
set -euo pipefail
build=${1:?BUILD-DIR}
n=${2:?N}
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
setsid valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$build/server/forkpoold" \
	--listen 127.0.0.1:0 --workers 2 --loop epoll --log-level info \
	--task-concurrency sleep=1 --max-queue 1000000 2>"$out/log" >/dev/null &
pid=$!
port=
for _ in $(seq 600); do
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$out/log" | head -n 1)
	[ -n "$port" ] && break
	kill -0 "$pid" || { cat "$out/log"; exit 1; }
	sleep 0.1
done
python3 - "$port" "$n" <<'PY'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
def call(method, path, body=None):
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    doc = json.loads(r.read())
    if r.status not in (200, 202):
        raise SystemExit("%s %s: %d %s" % (method, path, r.status, doc))
    return doc
call("POST", "/v1/apply", {"task": "sleep", "args": 4000})
ids = [call("POST", "/v1/apply", {"task": "sleep", "args": 0})["id"] for _ in range(n)]
if call("GET", "/v1/jobs/%s?wait=590" % ids[-1])["state"] != "done":
    raise SystemExit("the last apply did not finish")
PY
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
callgrind_annotate --inclusive=yes "$out"/cg.* 2>/dev/null |
	awk -v n="$n" '/chunk.c:fp__chunk_plan \[/ { gsub(",", "", $1); print "N=" n ": fp__chunk_plan " $1 " instructions, " int($1 / n) " per apply"; exit }'
