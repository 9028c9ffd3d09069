#!/usr/bin/env python3
"""The pipeline benchmark through forkpoold: bench-pipeline's three stages
(square, echo, square) over N items, as one HTTP client would run it:

  pipeline_http.py PORT N

POST /v1/pipelines with the items as NDJSON and ?wait (the answer comes when
the job is finished), then GET its /results stream to the last byte. Both are
timed, on one keep-alive connection; building the body before and checking
the outputs after (their sum and input indices, item i being i % 1000) are
not. Prints bench-pipeline's result line (with the time until the POST's answer
and the time of the stream); exits 1 on a wrong answer.

The client is a plain socket, not http.client: http.client's chunked reading
cost ~0.3-0.7 s for the 37 MB of a million outputs here (curl reads the same
stream in ~0.1 s), which is the client's cost, not the server's. The clock
stops only when the stream's last chunk (the empty one) has arrived; every
byte is then de-chunked and every output parsed and checked, so nothing less
than the full delivery is measured, and a stream that did not end as HTTP
says fails the run.
"""

import json
import socket
import sys
import time

RECV = 1 << 20


def recv_head(sock, buf):
    """Read until the end of a response's head; return (status, headers, body start)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        got = sock.recv(RECV)
        if not got:
            raise IOError("connection closed in a response head")
        buf += got
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, end + 4


def recv_response(sock):
    """One whole response: (status, headers, raw body as sent: chunked or not)."""
    buf = bytearray()
    status, headers, start = recv_head(sock, buf)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        # Lines of NDJSON hold no CR, so the empty last chunk is the only
        # place "\r\n0\r\n\r\n" can end what came; dechunk() checks it all.
        while not buf.endswith(b"\r\n0\r\n\r\n") and not (
                len(buf) - start == 5 and buf.endswith(b"0\r\n\r\n")):
            got = sock.recv(RECV)
            if not got:
                raise IOError("connection closed in a chunked body")
            buf += got
    else:
        want = start + int(headers.get("content-length", "0"))
        while len(buf) < want:
            got = sock.recv(RECV)
            if not got:
                raise IOError("connection closed in a body")
            buf += got
        if len(buf) != want:
            raise IOError("%d bytes past the response" % (len(buf) - want))
    return status, headers, memoryview(buf)[start:]


def dechunk(raw):
    """The body of a chunked transfer; raises on anything but exact chunked framing."""
    out = []
    pos = 0
    while True:
        eol = bytes(raw[pos:pos + 20]).find(b"\r\n")
        if eol < 0:
            raise IOError("bad chunk size line at byte %d" % pos)
        size = int(bytes(raw[pos:pos + eol]), 16)
        pos += eol + 2
        if size == 0:
            if bytes(raw[pos:]) != b"\r\n":
                raise IOError("%d bytes after the last chunk" % (len(raw) - pos))
            return b"".join(out)
        out.append(raw[pos:pos + size])
        if bytes(raw[pos + size:pos + size + 2]) != b"\r\n":
            raise IOError("chunk at byte %d not followed by CRLF" % pos)
        pos += size + 2


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    port, n = int(sys.argv[1]), int(sys.argv[2])
    body = "".join("%d\n" % (i % 1000) for i in range(n)).encode()
    post = (b"POST /v1/pipelines?stages=square,echo,square&wait=600 HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)

    t0 = time.monotonic()
    sock.sendall(post)
    sock.sendall(body)
    status, _, raw = recv_response(sock)
    doc = json.loads(bytes(raw))
    if status != 200 or doc.get("state") != "done":
        sys.stderr.write("pipeline_http: POST answered %d: %r\n" % (status, doc))
        sys.exit(1)
    t1 = time.monotonic()
    sock.sendall(b"GET /v1/jobs/%s/results HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 % doc["id"].encode())
    status, headers, raw = recv_response(sock)
    secs = time.monotonic() - t0

    data = dechunk(raw) if headers.get("transfer-encoding", "").lower() == "chunked" \
        else bytes(raw)
    total = 0
    outputs = 0
    bad = 0
    for line in data.splitlines():
        x = json.loads(line)
        outputs += 1
        if "value" not in x or not 0 <= x["index"] < n:
            bad += 1
            continue
        total += x["value"]
    sock.sendall(b"DELETE /v1/jobs/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % doc["id"].encode())
    recv_response(sock)
    sock.close()
    want = sum((i % 1000) ** 4 for i in range(n))
    print("result name=pipeline-http backend=http items=%d outputs=%d seconds=%.3f rate=%.1f "
          "post_seconds=%.3f results_seconds=%.3f"
          % (n, outputs, secs, n / secs, t1 - t0, secs - (t1 - t0)))
    if status != 200 or outputs != n or bad or total != want:
        sys.stderr.write("pipeline_http: wrong: status %d outputs=%d bad=%d sum=%d want=%d\n"
                         % (status, outputs, bad, total, want))
        sys.exit(1)


if __name__ == "__main__":
    main()
