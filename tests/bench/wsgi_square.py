"""A trivial WSGI app for scripts/bench peers: the work of forkpool's HTTP apply
of `square`, as a uWSGI or gunicorn user would write it.

    POST (any path) {"task": "square", "args": 7}  ->  200 {"state":"done","result":49}

The request body is read and parsed as JSON and the square computed in the
worker process that serves the request; the answer carries Content-Length so
that a server that keeps connections alive can. Anything else is answered 400
with a message naming what was wrong. Standard library only.
"""

import json


def _answer(start_response, status, obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _bad(start_response, message):
    return _answer(start_response, "400 Bad Request",
                   {"error": {"code": "bad_request", "message": message}})


def application(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _bad(start_response, "only POST is served")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _bad(start_response, "Content-Length is not a number")
    try:
        request = json.loads(environ["wsgi.input"].read(length))
    except ValueError as e:
        return _bad(start_response, "the body is not JSON: %s" % e)
    if not isinstance(request, dict) or request.get("task") != "square":
        return _bad(start_response, 'expected {"task":"square","args":N}')
    x = request.get("args")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _bad(start_response, "square: args must be a number")
    return _answer(start_response, "200 OK", {"state": "done", "result": x * x})
