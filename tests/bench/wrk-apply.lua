-- wrk script for scripts/bench http: every request is the same trivial apply,
--   POST <url> {"task":"square","args":7}
-- with the URL (…/v1/apply?wait=5) given on wrk's command line. No response() hook on purpose:
-- a Lua call per response would slow wrk's single thread and lower the figure it measures;
-- wrk counts statuses >= 400 and socket errors itself, and scripts/bench checks those counts.
wrk.method = "POST"
wrk.body = '{"task":"square","args":7}'
wrk.headers["Content-Type"] = "application/json"
