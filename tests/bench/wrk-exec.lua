-- wrk script for scripts/bench exec: every request is the same trivial apply of a Python task
-- through forkpoold's exec pool `py`, POST <url> {"task":"py.square","args":7}; as wrk-apply.lua.
wrk.method = "POST"
wrk.body = '{"task":"py.square","args":7}'
wrk.headers["Content-Type"] = "application/json"
