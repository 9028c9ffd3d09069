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
stream in ~0.1 s), which is the client's cost, not the server's; for the
same reason it receives into one buffer made before the clock starts (see
Inbox), not into a fresh object per recv(). The clock
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


class Inbox:
    """Where responses are received: one buffer, made and written before the
    clock starts, read into with recv_into(). A recv() of a fresh 1 MiB object
    per call cost this client 0.1-0.15 s for the 37 MB of a million outputs
    (page faults on every new object), more than the server spends writing
    them; curl reads the same stream in ~0.08 s, and this buffer in ~0.06 s.
    Each response is received from the start of the buffer."""

    def __init__(self, sock, size):
        self.sock = sock
        self.buf = bytearray(size)
        self.buf[::4096] = b"\x01" * len(range(0, size, 4096))
        self.view = memoryview(self.buf)
        self.n = 0

    def more(self):
        """Receive what comes next (at least a byte), growing the buffer if it is full."""
        if len(self.buf) - self.n < RECV:
            self.view.release()
            self.buf.extend(bytes(len(self.buf)))
            self.view = memoryview(self.buf)
        got = self.sock.recv_into(self.view[self.n:], RECV)
        if not got:
            raise IOError("connection closed in a response")
        self.n += got

    def ends_with(self, tail, start):
        return self.n - start >= len(tail) and self.buf[self.n - len(tail):self.n] == tail


def recv_response(inbox):
    """One whole response: (status, headers, raw body as sent: chunked or not).
    The body is a view of the inbox: valid until the next response is read."""
    inbox.n = 0
    while True:
        end = inbox.buf.find(b"\r\n\r\n", 0, inbox.n)
        if end >= 0:
            break
        inbox.more()
    lines = bytes(inbox.buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    start = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        # Lines of NDJSON hold no CR, so the empty last chunk is the only
        # place "\r\n0\r\n\r\n" can end what came; dechunk() checks it all.
        while not inbox.ends_with(b"\r\n0\r\n\r\n", start) and not (
                inbox.n - start == 5 and inbox.ends_with(b"0\r\n\r\n", start)):
            inbox.more()
    else:
        want = start + int(headers.get("content-length", "0"))
        while inbox.n < want:
            inbox.more()
        if inbox.n != want:
            raise IOError("%d bytes past the response" % (inbox.n - want))
    return status, headers, inbox.view[start:inbox.n]


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
    inbox = Inbox(sock, 64 * n + (1 << 20))

    t0 = time.monotonic()
    sock.sendall(post)
    sock.sendall(body)
    status, _, raw = recv_response(inbox)
    doc = json.loads(bytes(raw))
    raw.release()
    if status != 200 or doc.get("state") != "done":
        sys.stderr.write("pipeline_http: POST answered %d: %r\n" % (status, doc))
        sys.exit(1)
    t1 = time.monotonic()
    sock.sendall(b"GET /v1/jobs/%s/results HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 % doc["id"].encode())
    status, headers, raw = recv_response(inbox)
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
    raw.release()
    recv_response(inbox)
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
