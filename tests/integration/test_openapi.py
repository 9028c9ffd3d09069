#!/usr/bin/env python3
"""The API's description (docs/openapi.json) against the live server, both ways (issue 17).

(a) Every route the server answers is described: the server's operations
    are read from the routing table in server/api.c and must be the
    document's; every other method on a described path answers 405 with an
    Allow header naming the described ones; the query parameters and body
    members an operation knows (its 400 unknown_parameter / unknown_member
    lists them) are the ones the document gives.
(b) Every described answer is given as described: for each operation, a
    request that should succeed is validated against its response's schema
    (a JSON-schema subset validator below), and for each documented 4xx (and
    the 503 and 507 a test can cause) a request that provokes it gets that
    status and an error document its schema takes. A documented status with
    no request here to provoke it fails the test, so the two cannot drift.

Also: GET /v1/openapi.json is the file, with the daemon's version, and needs
no token; docs/openapi.yaml is the JSON rendered.

Run by meson once per backend:
    test_openapi.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, wait_until  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")
YAML_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
RENDER = os.path.join(ROOT, "server", "openapi", "render.py")
API_C = os.path.join(ROOT, "server", "api.c")

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
TOKEN = "openapi-test-token"

with open(DOC_PATH, encoding="utf-8") as _f:
    DOC = json.load(_f)


# --- a JSON-schema subset ----------------------------------------------------

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
# What the validator checks; a schema using anything else outside KNOWN_ANNOTATIONS
# is refused, so that the document cannot say more than is checked.
KEYWORDS = {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum",
            "anyOf", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems",
            "maxItems"}
KNOWN_ANNOTATIONS = {"description", "format", "default"}


def resolve(ref):
    if not ref.startswith("#/"):
        raise AssertionError("only local $refs: %s" % ref)
    node = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def validate(v, schema, where="$"):
    """The list of ways v is not what schema says (empty: it is)."""
    errs = []
    unknown = set(schema) - KEYWORDS - KNOWN_ANNOTATIONS
    if unknown:
        return ["%s: the schema uses %s, which this validator does not check" % (where, unknown)]
    if "$ref" in schema:
        return validate(v, resolve(schema["$ref"]), where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](v) for t in types):
            return ["%s: %r is not of type %s" % (where, v, "|".join(types))]
    if "enum" in schema and v not in schema["enum"]:
        errs.append("%s: %r is not one of %r" % (where, v, schema["enum"]))
    if isinstance(v, str):
        if "pattern" in schema and not re.search(schema["pattern"], v):
            errs.append("%s: %r does not match %s" % (where, v, schema["pattern"]))
        if len(v) < schema.get("minLength", 0) or len(v) > schema.get("maxLength", len(v)):
            errs.append("%s: %r has a length out of bounds" % (where, v))
    if TYPES["number"](v):
        if v < schema.get("minimum", v) or v > schema.get("maximum", v):
            errs.append("%s: %r is out of bounds" % (where, v))
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0) or len(v) > schema.get("maxItems", len(v)):
            errs.append("%s: %d items, out of bounds" % (where, len(v)))
        if "items" in schema:
            for i, x in enumerate(v):
                errs += validate(x, schema["items"], "%s[%d]" % (where, i))
    if isinstance(v, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in v:
                errs.append("%s: no member %r" % (where, k))
        for k, x in v.items():
            if k in props:
                errs += validate(x, props[k], "%s.%s" % (where, k))
            elif schema.get("additionalProperties", True) is False:
                errs.append("%s: member %r is not described" % (where, k))
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += validate(x, schema["additionalProperties"], "%s.%s" % (where, k))
    if "anyOf" in schema:
        tries = [validate(v, s, where) for s in schema["anyOf"]]
        if all(tries):
            errs.append("%s: none of anyOf matches: %s" % (where, "; ".join(t[0] for t in tries)))
    return errs


# --- the document ------------------------------------------------------------

def operations():
    """{(METHOD, path): operation} as the document describes them."""
    ops = {}
    for path, item in DOC["paths"].items():
        for m, op in item.items():
            if m.upper() in METHODS:
                ops[(m.upper(), path)] = op
    return ops


def code_routes():
    """{(METHOD, path)} from server/api.c's routing table."""
    with open(API_C, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"\} routes\[\] = \{(.*?)\n\};", text, re.S)
    if not m:
        raise AssertionError("no `routes[]` table in server/api.c")
    rows = re.findall(r'\{ "([A-Z]+)", "([^"]+)",', m.group(1))
    if not rows:
        raise AssertionError("no rows read from server/api.c's routes[]")
    return set(rows)


def response_of(op, status):
    r = op["responses"][str(status)]
    return resolve(r["$ref"]) if "$ref" in r else r


def op_params(op, path):
    """The names of an operation's query parameters."""
    params = DOC["paths"][path].get("parameters", []) + op.get("parameters", [])
    params = [resolve(p["$ref"]) if "$ref" in p else p for p in params]
    return {p["name"] for p in params if p["in"] == "query"}


def known_list(message):
    m = re.search(r"known: (.*)$", message)
    if not m:
        raise AssertionError("no list of known names in %r" % message)
    return {x.strip() for x in m.group(1).split(",") if x.strip()}


def body_schema(op, media="application/json"):
    s = op["requestBody"]["content"][media]["schema"]
    return resolve(s["$ref"]) if "$ref" in s else s


# --- the tests ---------------------------------------------------------------

class Base(unittest.TestCase):
    daemon = None
    extra_args = ()

    @classmethod
    def start(cls, *args):
        cls.tmp = tempfile.TemporaryDirectory(prefix="fp-openapi-")
        tok = os.path.join(cls.tmp.name, "token")
        with open(tok, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(tok, 0o600)
        d = Daemon("--token-file", tok, *args, workers=2)
        d.start()
        d.token = TOKEN
        return d

    @classmethod
    def stop(cls, d):
        status = d.stop()
        cls.tmp.cleanup()
        if status != 0 or d.sanitizer_reports():
            raise AssertionError("forkpoold exited with status %s; log tail:\n%s" % (
                status, d.log_text()[-6000:]))

    def answers_as_described(self, method, path, status, r):
        """r is one of the documented answers of (method, path): status, media type, schema."""
        op = operations()[(method, path)]
        self.assertEqual(r.status, status, r)
        self.assertIn(str(status), op["responses"], "%s %s: %d is not documented" % (
            method, path, status))
        resp = response_of(op, status)
        content = resp.get("content")
        if not content:
            self.assertEqual(r.body, b"", r)
            return None
        ctype = (r.header("Content-Type") or "").split(";")[0].strip()
        self.assertIn(ctype, content, "%s %s %d: Content-Type %s, described %s" % (
            method, path, status, ctype, list(content)))
        schema = content[ctype].get("schema", {})
        for name, h in resp.get("headers", {}).items():
            value = r.header(name)
            if value is None:
                self.assertFalse(h.get("required"), "%s %s %d: no %s header" % (
                    method, path, status, name))
                continue
            self.assertEqual(validate(value, h["schema"], name), [], r)
        if ctype == "application/x-ndjson":
            docs = r.ndjson()
            for i, line in enumerate(docs):
                self.assertEqual(validate(line, schema, "line %d" % i), [], r)
            return docs
        if ctype == "application/json":
            doc = r.json()
            self.assertEqual(validate(doc, schema), [], r)
            return doc
        self.assertEqual(validate(r.body.decode("utf-8"), schema), [], r)
        return r.body


class RoutesTest(Base):
    """(a) the routes, methods, parameters and members, against the live server."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = cls.start()
        r = cls.daemon.post("/v1/apply?wait=10", {"task": "square", "args": 3})
        assert r.status == 200, r
        cls.job = r.json()["id"]

    @classmethod
    def tearDownClass(cls):
        cls.stop(cls.daemon)

    def concrete(self, path):
        return path.replace("{id}", self.job).replace("{key}", "openapi-key")

    def test_every_route_in_the_code_is_described_and_nothing_else(self):
        described = set(operations())
        code = code_routes()
        self.assertEqual(code - described, set(), "routes the server answers, not described")
        self.assertEqual(described - code, set(), "operations described, not in the server")

    def test_other_methods_answer_405_naming_the_described_ones(self):
        d = self.daemon
        for path, item in DOC["paths"].items():
            described = {m.upper() for m in item if m.upper() in METHODS}
            if "GET" in described:
                described.add("HEAD")
            for m in METHODS:
                r = d.request(m, self.concrete(path))
                if m in described:
                    self.assertNotEqual(r.status, 405, (m, path, r))
                    continue
                self.assertEqual(r.status, 405, (m, path, r))
                allow = {x.strip() for x in r.header("Allow").split(",")}
                self.assertEqual(allow, described, (m, path))
                if m == "HEAD":
                    continue
                self.assertEqual(validate(r.json(), DOC["components"]["schemas"]["Error"]), [])
                self.assertEqual(r.json()["error"]["code"], "method_not_allowed")

    def test_paths_not_described_answer_404(self):
        d = self.daemon
        for path in ("/v1", "/v1/", "/v1/jobs/", "/v1/jobs/%s/result" % self.job,
                     "/v1/jobs/%s/results/x" % self.job, "/v1/applyx", "/metrics/",
                     "/ui/", "/v1/openapi.yaml", "/v1/jobs/" + "a" * 80):
            r = d.get(path)
            self.assertEqual(r.status, 404, (path, r))
            self.assertEqual(r.json()["error"]["code"], "not_found", path)

    def test_each_operations_query_parameters_are_the_described_ones(self):
        d = self.daemon
        for (method, path), op in operations().items():
            body, headers = None, {}
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                # The NDJSON form takes every parameter; the JSON one a part.
                if "application/x-ndjson" in content:
                    body, headers = "1\n", {"Content-Type": "application/x-ndjson"}
                else:
                    body = {}
            r = d.request(method, self.concrete(path) + "?zz_not_a_parameter=1", body=body,
                          headers=headers)
            self.answers_as_described(method, path, 400, r)
            self.assertEqual(r.json()["error"]["code"], "unknown_parameter", (method, path))
            msg = r.json()["error"]["message"]
            want = op_params(op, path)
            if not want:
                self.assertIn("takes no query parameters", msg, (method, path))
            else:
                self.assertEqual(known_list(msg), want, (method, path))

    def test_request_bodies_members_are_the_described_ones(self):
        d = self.daemon
        ops = operations()
        for path in ("/v1/apply", "/v1/map", "/v1/pipelines"):
            schema = body_schema(ops[("POST", path)])
            r = d.post(path, {"zz_not_a_member": 1})
            self.answers_as_described("POST", path, 400, r)
            self.assertEqual(known_list(r.json()["error"]["message"]), set(schema["properties"]),
                             path)
        stage = DOC["components"]["schemas"]["Stage"]
        r = d.post("/v1/pipelines", {"stages": [{"task": "echo", "zz": 1}], "items": []})
        self.assertEqual(known_list(r.json()["error"]["message"]), set(stage["properties"]))
        reduce = [s for s in DOC["components"]["schemas"]["PipelineRequest"]["properties"]
                  ["reduce"]["anyOf"] if s.get("type") == "object"][0]
        r = d.post("/v1/pipelines", {"stages": ["echo"], "items": [],
                                     "reduce": {"task": "sum", "zz": 1}})
        self.assertEqual(known_list(r.json()["error"]["message"]), set(reduce["properties"]))

    def test_the_served_description_is_docs_openapi_json_without_a_token(self):
        d = self.daemon
        r = d.get("/v1/openapi.json", token="")
        doc = self.answers_as_described("GET", "/v1/openapi.json", 200, r)
        version = d.get("/v1/health").json()["version"]
        want = dict(DOC, info=dict(DOC["info"], version=version))
        self.assertEqual(doc, want)
        self.assertEqual(d.request("HEAD", "/v1/openapi.json", token="").body, b"")

    def test_the_yaml_is_the_json_rendered(self):
        p = subprocess.run([sys.executable, RENDER, "check", DOC_PATH, YAML_PATH],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_the_document_uses_only_what_the_validator_checks(self):
        def walk(node, where):
            if isinstance(node, dict):
                if "schema" in node and isinstance(node["schema"], dict):
                    check_schema(node["schema"], where + ".schema")
                for k, v in node.items():
                    walk(v, where + "." + k)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, "%s[%d]" % (where, i))

        def check_schema(s, where):
            self.assertEqual(set(s) - KEYWORDS - KNOWN_ANNOTATIONS, set(), where)
            for k in ("items", "additionalProperties"):
                if isinstance(s.get(k), dict):
                    check_schema(s[k], where + "." + k)
            for k, v in s.get("properties", {}).items():
                check_schema(v, where + ".properties." + k)
            for i, v in enumerate(s.get("anyOf", [])):
                check_schema(v, "%s.anyOf[%d]" % (where, i))

        walk(DOC["paths"], "paths")
        walk(DOC["components"]["responses"], "responses")
        for name, s in DOC["components"]["schemas"].items():
            check_schema(s, "schemas." + name)


class AnswersTest(Base):
    """(b) every operation's success and each documented 4xx, as described.

    The daemon's limits are low enough for a test to reach each: a body of
    more than 64 KiB is 413, a map of more than 100 items 429 queue_full,
    results of more than 32 KiB 507, a request not sent whole within a
    second 408."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = cls.start("--max-body", "64k", "--max-queue", "100",
                               "--max-results-memory", "32k", "--header-timeout", "1s",
                               "--body-timeout", "1s", "--body-min-rate", "0")

    @classmethod
    def tearDownClass(cls):
        cls.stop(cls.daemon)

    def check(self, method, path, status, r):
        doc = self.answers_as_described(method, path, status, r)
        if status >= 400:
            record(method, path, str(status), doc)
        return doc

    def finished_job(self, kind="map"):
        d = self.daemon
        if kind == "map":
            r = d.post("/v1/map?wait=10", {"task": "square", "items": [1, 2, 3]})
        else:
            r = d.post("/v1/pipelines?wait=10", {"stages": ["range", "square"], "items": [3]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done", r)
        return r.json()["id"]

    def gone_job(self):
        job = self.finished_job()
        self.assertEqual(self.daemon.delete("/v1/jobs/" + job).status, 204)
        return job

    # --- successes ---

    def test_submissions_answer_as_described(self):
        d = self.daemon
        ops = operations()

        def post(path, body, **kw):
            """Post body, which the request's schema takes (JSON bodies)."""
            if isinstance(body, dict):
                self.assertEqual(validate(body, body_schema(ops[("POST", path.split("?")[0])])), [],
                                 body)
            return d.post(path, body, **kw)

        r = post("/v1/apply", {"task": "square", "args": 7})
        doc = self.check("POST", "/v1/apply", 202, r)
        self.assertEqual(r.header("Location"), "/v1/jobs/" + doc["id"])
        doc = self.check("POST", "/v1/apply", 200, post("/v1/apply?wait=10",
                                                        {"task": "square", "args": 7}))
        self.assertEqual(doc["result"], 49)
        doc = self.check("POST", "/v1/apply", 200, post(
            "/v1/apply?wait=10&results=1", {"task": "fail", "args": "no", "retries": 1,
                                            "retry_on": ["task_error"], "timeout_ms": 5000}))
        self.assertEqual(doc["error"]["type"], "task_error")
        self.check("POST", "/v1/map", 202, post("/v1/map", {"task": "square", "items": [1, 2]}))
        doc = self.check("POST", "/v1/map", 200, post(
            "/v1/map?wait=10&results=1", {"task": "square", "items": [1, "x"], "chunksize": 1}))
        self.assertEqual(len(doc["results"]), 2)
        self.check("POST", "/v1/map", 202, post(
            "/v1/map?task=square&retries=1&retry_on=crash,timeout", "1\n2\n",
            headers={"Content-Type": "application/x-ndjson"}))
        self.check("POST", "/v1/pipelines", 202, post(
            "/v1/pipelines", {"stages": ["range", {"task": "square", "workers": 1, "buffer": 8}],
                              "items": [3], "reduce": {"task": "sum", "batch": 2}}))
        doc = self.check("POST", "/v1/pipelines", 200, post(
            "/v1/pipelines?wait=10&results=1",
            {"stages": ["range", "square"], "items": [3, "x"], "ordered": True}))
        self.assertTrue(doc["stages"] and doc["results"], doc)
        self.check("POST", "/v1/pipelines", 200, post(
            "/v1/pipelines?stages=words,lower&reduce=count&ordered=1&wait=10", '"The cat"\n',
            headers={"Content-Type": "application/x-ndjson"}))
        # A repeat with the same Idempotency-Key: the key's job, 200, marked.
        for path, body in (("/v1/apply", {"task": "echo", "args": 1}),
                           ("/v1/map", {"task": "echo", "items": [1]}),
                           ("/v1/pipelines", {"stages": ["echo"], "items": [1]})):
            key = {"Idempotency-Key": "openapi " + path}
            first = self.check("POST", path, 202, post(path, body, headers=key))
            r = post(path + "?wait=10", body, headers=key)
            again = self.check("POST", path, 200, r)
            self.assertEqual((again["id"], r.header("Idempotent-Replayed")),
                             (first["id"], "true"))

    def test_jobs_answer_as_described(self):
        d = self.daemon
        job = self.finished_job()
        pjob = self.finished_job("pipeline")
        P = "/v1/jobs/{id}"
        self.check("GET", P, 200, d.get("/v1/jobs/" + job))
        self.check("GET", P, 200, d.get("/v1/jobs/%s?results=1&wait=1" % pjob))
        self.check("GET", "/v1/jobs", 200, d.get("/v1/jobs"))
        page = self.check("GET", "/v1/jobs", 200, d.get("/v1/jobs?limit=1&state=done"))
        self.assertIsInstance(page["next"], str)
        self.check("GET", "/v1/jobs", 200, d.get("/v1/jobs?limit=1&after=" + page["next"]))
        lines = self.check("GET", P + "/results", 200, d.get("/v1/jobs/%s/results" % job))
        self.assertEqual([x["value"] for x in lines], [1, 4, 9])
        self.check("GET", P + "/results", 200,
                   d.get("/v1/jobs/%s/results?order=completion" % pjob))
        r = d.post("/v1/pipelines?wait=10", {"stages": ["range", "square"], "items": [2, "x"]})
        lines = self.check("GET", P + "/results", 200, d.get("/v1/jobs/%s/results"
                                                             % r.json()["id"]))
        self.assertTrue(any("stage" in x for x in lines), lines)
        running = d.post("/v1/map", {"task": "sleep", "items": [20000]}).json()["id"]
        doc = self.check("DELETE", P, 200, d.delete("/v1/jobs/" + running))
        self.assertEqual(doc["state"], "cancelled")
        self.check("DELETE", P, 204, d.delete("/v1/jobs/" + job))

    def test_kv_answers_as_described(self):
        d = self.daemon
        J = {"Content-Type": "application/json"}
        K = "/v1/kv/{key}"
        self.check("PUT", K, 204, d.request("PUT", "/v1/kv/doc", body='{"a": 1}', headers=J))
        self.check("PUT", K, 204, d.request("PUT", "/v1/kv/doc2?ttl=30", body="2", headers=J))
        self.assertEqual(self.check("GET", K, 200, d.get("/v1/kv/doc")), {"a": 1})
        self.assertEqual(self.check("POST", K + "/incr", 200, d.post("/v1/kv/n/incr?by=3", None)), 3)
        doc = self.check("POST", K + "/cas", 200,
                         d.post("/v1/kv/doc/cas", {"expect": {"a": 1}, "value": [3], "ttl": 5}))
        self.assertEqual(doc, {"swapped": True, "value": [3]})
        doc = self.check("GET", "/v1/kv", 200, d.get("/v1/kv?prefix=doc&limit=10"))
        self.assertEqual([e["key"] for e in doc["keys"]], ["doc", "doc2"])
        self.check("DELETE", K, 204, d.delete("/v1/kv/doc"))

    def test_server_and_pages_answer_as_described(self):
        d = self.daemon
        for path in ("/v1/tasks", "/v1/workers", "/v1/health", "/metrics", "/", "/ui",
                     "/v1/openapi.json"):
            public = DOC["paths"][path]["get"].get("security") == []
            self.check("GET", path, 200, d.get(path, token="" if public else None))
            # HEAD: the same status and headers, no body.
            r = d.request("HEAD", path, token="" if public else None)
            self.assertEqual((r.status, r.body), (200, b""), path)
        d.worker_pids()
        self.check("GET", "/v1/workers", 200, d.get("/v1/workers"))

    # --- errors ---

    def test_each_documented_4xx_answers_as_described(self):
        d = self.daemon
        job, gone = self.finished_job(), self.gone_job()
        never = "0" * 32
        big = "x" * (70 * 1024)
        # A body each submission takes, and ones it refuses with each 400 code.
        bodies = {"/v1/apply": {"task": "echo", "args": 1},
                  "/v1/map": {"task": "echo", "items": [1]},
                  "/v1/pipelines": {"stages": ["echo"], "items": [1]}}
        conflict = {}
        for path, body in bodies.items():
            key = {"Idempotency-Key": "openapi conflict " + path}
            self.assertEqual(d.post(path, body, headers=key).status, 202)
            other = dict(body, args=2) if "args" in body else dict(body, items=[2])
            conflict[path] = d.post(path, other, headers=key)
        bad = {"/v1/apply": [{"task": 1}, {"task": "nope"}, {"task": "echo", "zz": 1},
                             {"task": "echo", "retries": 101}, {"task": "echo", "retry_on": []},
                             {"task": "echo", "retry_on": ["never"]},
                             {"task": "echo", "timeout_ms": -1}],
               "/v1/map": [{"task": "echo", "items": 1}, {"task": "nope", "items": [1]},
                           {"task": "echo", "items": [], "zz": 1},
                           {"task": "echo", "items": [], "chunksize": -1}, {"items": []}],
               "/v1/pipelines": [{"stages": [], "items": []}, {"stages": ["nope"], "items": [1]},
                                 {"stages": ["echo"], "items": [], "zz": 1},
                                 {"stages": ["echo"] * 65, "items": []},
                                 {"stages": [{"task": "echo", "buffer": 0}], "items": []},
                                 {"stages": [{"task": "echo", "zz": 0}], "items": []},
                                 {"stages": ["echo"], "items": [], "reduce": {"task": "sum",
                                                                             "batch": 1}},
                                 {"stages": ["echo"], "items": [], "ordered": 1},
                                 {"stages": ["echo"]}]}
        bad_query = {"/v1/jobs": "?limit=0", "/v1/jobs/{id}": "?wait=x",
                     "/v1/jobs/{id}/results": "?order=x"}
        timeouts = {}
        with ThreadPoolExecutor(max_workers=16) as pool:
            # The 408s at once: each takes the second of the deadline.
            for (method, path), op in operations().items():
                if "408" in op["responses"]:
                    timeouts[(method, path)] = pool.submit(
                        self.raw, method, path.replace("{id}", job), path in bodies, False)
        # Enough sleeping items to fill --max-queue: then even an apply is refused.
        filler = d.post("/v1/map", {"task": "sleep", "items": [10000] * 100})
        self.assertEqual(filler.status, 202, filler)
        filler = filler.json()["id"]
        try:
            full = {path: d.post(path, body) for path, body in bodies.items()}
        finally:
            self.assertEqual(d.delete("/v1/jobs/" + filler).status, 200)
        for (method, path), op in operations().items():
            url = path.replace("{id}", job).replace("{key}", "openapi-key")
            body = bodies.get(path)
            for status in sorted(op["responses"]):
                s = int(status)
                if not 400 <= s < 500 and s != 507:
                    continue
                if s == 429 and path not in bodies:
                    continue          # too_many_connections only: ConnectionsTest
                provoke = {
                    400: lambda: [d.request(method, url + "?zz=1", body=body),
                                  self.raw(method, url, body is not None, True, host=False)] +
                    ([d.request(method, url + bad_query[path])] if path in bad_query else []) +
                    ([d.post(path, "{", headers={"Content-Type": "application/json"})] +
                     [self.refused_by_schema(method, path, b) for b in bad[path]]
                     if body else []) +
                    ([d.post(path, body, headers={"Idempotency-Key": "k" * 256})]
                     if body else []),
                    409: lambda: [conflict[path]],
                    401: lambda: [d.request(method, url, body=body, token="")],
                    404: lambda: [d.request(method, path.replace("{id}", never))],
                    410: lambda: [d.request(method, path.replace("{id}", gone))],
                    408: lambda: [timeouts[(method, path)].result()],
                    413: lambda: [d.post(path, dict(body, zz=big))],
                    414: lambda: [d.request(method, url + "?" + "x" * 9000, body=body)],
                    415: lambda: [d.post(path, "1", headers={"Content-Type": "text/plain"})],
                    429: lambda: [full[path]],
                    431: lambda: [d.request(method, url, body=body,
                                            headers={"X-Big": "x" * 17000})],
                    507: lambda: [d.post(path, {"task": "echo", "args": "x" * 40000}
                                         if path == "/v1/apply" else
                                         dict(body, items=["x" * 40000]))],
                }.get(s)
                if path.startswith("/v1/kv") and s not in (401, 408, 414, 431):
                    provoke = lambda: self.kv_provoke(method, path, s, url)  # noqa: E731
                self.assertIsNotNone(provoke, "%s %s documents %d: the test provokes no such "
                                     "answer" % (method, path, s))
                for r in provoke():
                    self.check(method, path, s, r)
        RAN.add(type(self).__name__)

    def kv_provoke(self, method, path, status, url):
        """The answers of a shared-value operation (/v1/kv...) with `status`."""
        d = self.daemon
        J = {"Content-Type": "application/json"}
        cas = path.endswith("/cas")
        body = '{"value": 1}' if cas else "1" if method == "PUT" else None
        if status == 400:
            rs = [d.request(method, url + "?zz=1", body=body, headers=J),
                  self.raw(method, url, False, True, host=False)]
            if "{key}" in path:
                rs.append(d.request(method, path.replace("{key}", "bad%20key"), body=body,
                                    headers=J))
            if path == "/v1/kv":
                rs.append(d.get("/v1/kv?limit=0"))
            elif method == "PUT":
                rs += [d.request("PUT", url, body="{", headers=J),
                       d.request("PUT", url + "?ttl=0", body="1", headers=J)]
            elif path.endswith("/incr"):
                rs.append(d.post(url + "?by=x", None))
            elif cas:
                rs += [d.request("POST", url, body="{", headers=J), d.post(url, {"expect": 1}),
                       d.post(url, {"value": 1, "zz": 1})]
            return rs
        if status == 404:
            return [d.request(method, path.replace("{key}", "never-set"))]
        if not getattr(self, "kv_ready", False):
            # Before the store is filled for the 507s: the values the 409s need.
            self.kv_ready = True
            self.assertEqual(d.request("PUT", "/v1/kv/openapi-word", body='"w"', headers=J).status, 204)
            self.assertEqual(d.request("PUT", "/v1/kv/openapi-max", body=str(2**63 - 1),
                                       headers=J).status, 204)
        if status == 409:
            return [d.post("/v1/kv/openapi-word/incr", None), d.post("/v1/kv/openapi-max/incr", None)]
        if status == 413:
            # 24 KiB of body that the store keeps as 78 KiB: 1e9 is 1000000000.0 compact.
            grows = "[" + ",".join(["1e9"] * 6000) + "]"
            big = "x" * (70 * 1024)
            return [d.request(method, url, body='{"value": %s}' % grows if cas else grows,
                              headers=J),
                    d.request(method, url, body=big, headers=J)]
        if status == 415:
            return [d.request(method, url, body="1", headers={"Content-Type": "text/plain"})]
        if status == 507 and method == "DELETE":
            return []   # insufficient_storage only: UNREACHED_AT
        if status == 507:
            self.fill_kv()
            return [d.request(method, path.replace("{key}", "openapi-new"), body=body, headers=J)]
        return None

    def fill_kv(self):
        """Fill the shared values to their 64 MiB (once); emptied again after the test."""
        d = self.daemon
        if getattr(self, "kv_filled", None):
            return
        self.kv_filled = []
        self.addCleanup(self.empty_kv)
        conn = d.connection(20)
        try:
            # Big values to the brim, then smaller ones into what is left, down to
            # the smallest, so that no new key fits.
            for size in (60 * 1024, 4096, 256, 1):
                value = "1" if size == 1 else '"%s"' % ("x" * size)
                while True:
                    key = "openapi-fill-%d" % len(self.kv_filled)
                    r = d.request("PUT", "/v1/kv/" + key, body=value,
                                  headers={"Content-Type": "application/json"}, conn=conn)
                    if r.status == 507:
                        break
                    self.assertEqual(r.status, 204, r)
                    self.kv_filled.append(key)
                    self.assertLess(len(self.kv_filled), 2000)
        finally:
            conn.close()
        self.assertGreater(len(self.kv_filled), 1000)

    def empty_kv(self):
        conn = self.daemon.connection(20)
        try:
            for key in self.kv_filled:
                self.daemon.request("DELETE", "/v1/kv/" + key, conn=conn)
        finally:
            conn.close()

    def refused_by_schema(self, method, path, body):
        """Post a body the server refuses with 400; the request's schema refuses
        it too, unless the mistake is a task's name (which no schema knows)."""
        r = self.daemon.post(path, body)
        if r.status == 400 and r.json()["error"]["code"] != "unknown_task":
            self.assertNotEqual(validate(body, body_schema(operations()[(method, path)])), [],
                                "%s %s: the schema takes %r, which the server refuses: %r" % (
                                    method, path, body, r))
        return r

    def raw(self, method, url, with_body, whole, host=True):
        """A request by hand: without Host, or never ended (408 after a second)."""
        s = self.daemon.raw_socket(timeout=15)
        try:
            head = "%s %s HTTP/1.1\r\n%sAuthorization: Bearer %s\r\n" % (
                method, url, "Host: x\r\n" if host else "", TOKEN)
            if with_body:
                head += "Content-Type: application/json\r\nContent-Length: 10\r\n"
            if whole:
                head += "\r\n" + ("{\"a\": 12}" if with_body else "")
            elif with_body:
                head += "\r\n{"
            s.sendall(head.encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return parse_response(data)


def parse_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    hdrs = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        hdrs[k.strip()] = v.strip()
    return harness.Response(status, hdrs, body)


def record(method, path, status, doc):
    """An error code seen in an answer of (method, path), for EveryCodeTest."""
    SEEN.setdefault((method, path, status), set()).add(doc["error"]["code"])


SEEN = {}
RAN = set()


class ConnectionsTest(Base):
    """429 too_many_connections on every operation, from --max-connections-per-ip 1."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = cls.start("--max-connections-per-ip", "1")

    @classmethod
    def tearDownClass(cls):
        cls.stop(cls.daemon)

    def test_a_connection_over_the_cap_is_answered_429_on_every_operation(self):
        d = self.daemon
        for (method, path), op in operations().items():
            if "429" not in op["responses"]:
                continue
            # Up to a few tries: the server may accept the second connection
            # before it read the first's request, and close the first then,
            # idle as it still looks (the second is then answered as usual).
            for attempt in range(5):
                r = self.over_the_cap(method, path.replace("{id}", "0" * 32))
                if r.status == 429:
                    break
            doc = self.answers_as_described(method, path, 429, r)
            self.assertEqual(doc["error"]["code"], "too_many_connections")
            record(method, path, "429", doc)
        RAN.add(type(self).__name__)

    def over_the_cap(self, method, url):
        """The answer to a request on a second connection while one with a
        request under way (its headers begun) is open."""
        d = self.daemon
        hold = d.raw_socket(timeout=10)
        try:
            # A whole exchange first: the server has accepted this connection.
            hold.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not re.search(rb"\r\n\r\n\{.*\}\n$", got, re.S):
                chunk = hold.recv(4096)
                self.assertTrue(chunk, "the held connection was closed: %r" % got)
                got += chunk
            hold.sendall(b"GET /v1/tasks HTTP/1.1\r\n")
            return d.request(method, url, timeout=10)
        finally:
            hold.close()
            wait_until(lambda: d.get("/v1/health").status == 200, 10,
                       what="the held connection gone")


class DrainingTest(Base):
    """503 shutting_down on every submission and 503 draining health, while draining."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = cls.start("--drain-timeout", "20s")

    @classmethod
    def tearDownClass(cls):
        d = cls.daemon
        if d.alive():
            cls.stop(d)
        else:
            cls.tmp.cleanup()

    def test_while_draining_submissions_are_503_and_health_says_draining(self):
        d = self.daemon
        job = d.post("/v1/apply", {"task": "sleep", "args": 2000}).json()["id"]
        wait_until(lambda: d.job_state(job) == "running", 10, what="the job running")
        d.kill(signal.SIGTERM)
        wait_until(lambda: d.get("/v1/health").status == 503, 10, what="draining")
        doc = self.answers_as_described("GET", "/v1/health", 503, d.get("/v1/health"))
        self.assertEqual(doc["status"], "draining")
        for path, body in (("/v1/apply", {"task": "echo"}),
                           ("/v1/map", {"task": "echo", "items": [1]}),
                           ("/v1/pipelines", {"stages": ["echo"], "items": [1]})):
            doc = self.answers_as_described("POST", path, 503, d.post(path, body))
            self.assertEqual(doc["error"]["code"], "shutting_down")
            record("POST", path, "503", doc)
        self.assertEqual(d.wait_exit(), 0)
        self.assertFalse(d.sanitizer_reports())
        RAN.add(type(self).__name__)


# Codes no test here can cause: out of memory, and a pool whose workers cannot start.
# store_unavailable needs a cluster whose Redis is away: test_cluster_jobs.py answers it.
UNREACHED = {"internal", "internal_error", "pool_unavailable", "store_unavailable"}
# A shared value's write the journal cannot take needs a data directory that
# fails: test_kv_durable.py answers it (the daemon here has none).
UNREACHED_AT = {("PUT", "/v1/kv/{key}"): {"insufficient_storage"},
                ("DELETE", "/v1/kv/{key}"): {"insufficient_storage"},
                ("POST", "/v1/kv/{key}/incr"): {"insufficient_storage"},
                ("POST", "/v1/kv/{key}/cas"): {"insufficient_storage"}}


class ZzEveryCodeTest(unittest.TestCase):
    """Last (unittest runs classes by name): every documented error code was answered.

    Each 4xx, 503 and 507 response of each operation lists its codes; the
    tests above record the codes they saw, and each listed code must have
    been seen, but those in UNREACHED."""

    def test_every_documented_error_code_was_answered(self):
        if RAN != {"AnswersTest", "ConnectionsTest", "DrainingTest"}:
            self.skipTest("only with every class run (ran: %s)" % sorted(RAN))
        missing = []
        for (method, path), op in operations().items():
            for status in op["responses"]:
                if not (400 <= int(status) < 500 or status in ("503", "507")):
                    continue
                content = response_of(op, status).get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                codes = schema.get("properties", {}).get("error", {}).get(
                    "properties", {}).get("code", {}).get("enum", [])
                for code in (set(codes) - SEEN.get((method, path, status), set()) - UNREACHED -
                             UNREACHED_AT.get((method, path), set())):
                    missing.append("%s %s %s %s" % (method, path, status, code))
        self.assertEqual(sorted(missing), [], "documented, never answered")


if __name__ == "__main__":
    harness.main()
