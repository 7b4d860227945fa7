"""A small fault-injecting HTTP proxy on 127.0.0.1, in front of an S3 endpoint (moto's server).

    proxy = FaultProxy("http://127.0.0.1:5000").start()       # clients use proxy.url as endpoint_url
    proxy.add(Rule("reset", op="UploadPart", nth={1}))         # drop the 1st UploadPart's connection
    proxy.add(Rule(503, op="PutObject", key="runs/", nth={2, 3}))
    proxy.add(Rule("delay", delay_s=0.2))                      # every request, 200 ms late
    ... ; proxy.injected, proxy.requests, proxy.log ; proxy.clear() ; proxy.stop()

Requests are forwarded byte for byte: method, path and query exactly as sent, every header in its
order and spelling (Host and the SigV4 Authorization included: the signature covers Host, so it is
never rewritten), and the body's raw bytes (a chunked body is relayed chunk for chunk). Responses
come back with their status, headers and body; only hop-by-hop headers (Connection, Keep-Alive,
Transfer-Encoding) are the proxy's own, since it speaks keep-alive HTTP/1.1 to the client and opens
one upstream connection per request. botocore's `Expect: 100-continue` is answered by http.server
before the body is read, and forwarded as is (http.client skips the upstream's interim 100).

Faults (Rule.fault), each decided once the whole request has been read:

    "reset"          close the connection with a TCP RST and no response; the upstream never sees it
    "drop_response"  forward the request (the upstream applies it), then reset instead of answering
    "cut"            forward, send the response's headers and half its body, then close
    500 / 503        answer InternalError / SlowDown with S3's XML error body; not forwarded
    "delay"          sleep delay_s, then go on (throttling; several delay rules add up)
    "gate"           hold the request until `gate` requests matched this rule, then let them go on
                     one at a time in arrival order (makes "both read before either writes" certain,
                     and serializes conditional writes, which moto does not do atomically but S3 does)

A request is matched by S3 operation (see s3_operation), a substring of its decoded path
(bucket/key), and which matching request it is (nth, 1-based, counted per rule since it was added);
`times` caps the faults a rule injects and `within_s` limits it to that long after being added.
Every firing "delay" and "gate" rule applies first; then the first other rule (in the order added)
that fires decides what happens to the request ("gate" + "drop_response": hold, forward, lose the answer).
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Fault = Literal["reset", "drop_response", "cut", "delay", "gate", 500, 503]
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})
S3_ERRORS = {500: ("InternalError", "We encountered an internal error. Please try again."),
             503: ("SlowDown", "Please reduce your request rate.")}


def s3_operation(method: str, path: str, query: str) -> str:
    """The S3 API operation of a path-style request (only those d2v's store uses are told apart)."""
    q = parse_qs(query, keep_blank_values=True)
    has_key = "/" in path.lstrip("/")  # "/bucket/key..." vs "/bucket"
    if method == "PUT":
        if "partNumber" in q:
            return "UploadPart"
        return "PutObject" if has_key else "PutBucket" + "".join(k[:1].upper() + k[1:] for k in q)
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        return "Post"
    if method == "GET":
        if not has_key:
            return "ListObjectsV2" if "list-type" in q else "GetBucket"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return method


@dataclass
class Rule:
    fault: Fault
    op: str | Collection[str] | None = None  # S3 operation name(s); None: any
    key: str = ""  # substring of the decoded request path ("/bucket/prefix/runs/<id>/file")
    nth: Collection[int] | None = None  # which matching requests (1-based); None: every one
    times: int | None = None  # inject at most this many faults
    within_s: float | None = None  # active only this long after the rule was added
    delay_s: float = 0.2  # for "delay"
    gate: int = 2  # for "gate": how many requests to hold before releasing them
    gate_timeout_s: float = 10.0  # a gate that never fills releases what it holds after this
    # counted by the proxy
    matched: int = 0
    injected: int = 0
    added_at: float = field(default_factory=time.monotonic)

    def matches(self, op: str, path: str) -> bool:
        if self.op is not None and op not in ({self.op} if isinstance(self.op, str) else set(self.op)):
            return False
        return self.key in path

    def fires(self) -> bool:
        """For a request this rule matched (already counted in `matched`): is it one to fault?"""
        if self.within_s is not None and time.monotonic() - self.added_at > self.within_s:
            return False
        if self.nth is not None and self.matched not in self.nth:
            return False
        return self.times is None or self.injected < self.times


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it, and the fault (if any) it got."""
    op: str
    method: str
    path: str
    fault: str | None


class _Gate:
    """Holds requests until `size` have arrived, then lets them go one at a time, in arrival order.
    Tickets are handed out under the proxy's lock, in the order the requests were matched."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size, self.timeout_s = size, timeout_s
        self.arrived = 0  # tickets handed out
        self.turn = 0  # the ticket whose turn it is
        self.cond = threading.Condition()

    def ticket(self) -> int:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
            return self.arrived - 1

    @contextmanager
    def turn_of(self, ticket: int) -> Iterator[None]:
        with self.cond:  # a gate that never fills lets its requests go after timeout_s (tests notice)
            self.cond.wait_for(lambda: self.arrived >= self.size, timeout=self.timeout_s)
            self.cond.wait_for(lambda: self.turn >= ticket, timeout=self.timeout_s)
        try:
            yield
        finally:
            with self.cond:
                self.turn = max(self.turn, ticket + 1)
                self.cond.notify_all()


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.rules: list[Rule] = []
        self.log: list[Seen] = []
        self._lock = threading.Lock()
        self._gates: dict[int, _Gate] = {}
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ----------------------------------------------------------------------------- control

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects

            def do_any(self) -> None:
                with proxy._lock:
                    proxy._in_flight += 1
                try:
                    proxy._handle(self)
                except OSError:  # the client went away (it timed out, or we reset it): nothing to do
                    self.close_connection = True
                finally:
                    with proxy._lock:
                        proxy._in_flight -= 1

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_any  # noqa: N815

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="fault-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            rule.added_at = time.monotonic()
            self.rules.append(rule)
            if rule.fault == "gate":
                self._gates[id(rule)] = _Gate(rule.gate, rule.gate_timeout_s)
        return rule

    def clear(self) -> None:
        """No more faults (counts and log stay)."""
        with self._lock:
            self.rules.clear()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until no request is being handled (a delayed one may still reach the upstream late)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    return True
            time.sleep(0.02)
        return False

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def injected(self) -> int:
        """Faults injected so far, delays and gates included."""
        return sum(1 for seen in self.log if seen.fault is not None)

    def injected_by_kind(self) -> Counter[str]:
        return Counter(seen.fault for seen in self.log if seen.fault is not None)

    # --------------------------------------------------------------------------- one request

    def _decide(self, op: str, path: str) -> tuple[Rule | None, list[Rule], list[tuple[_Gate, int]]]:
        """(the first firing rule that is neither delay nor gate, the firing delays, the gates with
        this request's ticket); every matching rule counts the request, whether or not it fires."""
        chosen: Rule | None = None
        delays: list[Rule] = []
        gates: list[tuple[_Gate, int]] = []
        with self._lock:
            for rule in self.rules:
                if not rule.matches(op, path):
                    continue
                rule.matched += 1
                if not rule.fires():
                    continue
                if rule.fault == "delay":
                    delays.append(rule)
                elif rule.fault == "gate":
                    gate = self._gates[id(rule)]
                    gates.append((gate, gate.ticket()))
                elif chosen is None:
                    chosen = rule
                else:
                    continue
                rule.injected += 1
        return chosen, delays, gates

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)  # always read the whole request first, as a real server would
        raw_path, _, query = h.path.partition("?")
        path = unquote(raw_path)
        op = s3_operation(h.command, path, query)
        rule, delays, gates = self._decide(op, path)
        kinds = [str(r.fault) for r in delays] + ["gate"] * len(gates) + ([str(rule.fault)] if rule else [])
        with self._lock:
            self.log.append(Seen(op, h.command, path, "+".join(kinds) or None))
        for delay in delays:
            time.sleep(delay.delay_s)
        with ExitStack() as held:
            for gate, ticket in gates:
                held.enter_context(gate.turn_of(ticket))
            if rule is not None and rule.fault == "reset":
                return _reset(h)
            if rule is not None and rule.fault in S3_ERRORS:
                return _send_s3_error(h, int(rule.fault), path)
            status, reason, headers, data = self._forward(h, body)
        if rule is not None and rule.fault == "drop_response":
            return _reset(h)
        h.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                h.send_header(name, value)
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", len(data)))
        h.send_header("Content-Length", str(length if h.command == "HEAD" else len(data)))
        h.end_headers()
        if rule is not None and rule.fault == "cut" and data:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            # FIN, not RST: the client surely reads the half it was sent (a RST may discard it), then
            # finds the connection closed short of Content-Length
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_WR)
            return None
        h.wfile.write(data)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            # skip_host/skip_accept_encoding: the client's own headers go out unchanged, Host included
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for name, value in h.headers.items():
                conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()  # b"" for HEAD; de-chunked if the upstream chunked it
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    """The request body's raw bytes: Content-Length bytes, or a chunked body chunk for chunk."""
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        raw = bytearray()
        while True:
            line = h.rfile.readline()
            raw += line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = h.rfile.readline()
                    raw += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return bytes(raw)
            raw += h.rfile.read(size + 2)  # the chunk and its CRLF
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Abort the client's connection with a TCP RST (SO_LINGER 0), as a dying load balancer does."""
    h.close_connection = True
    try:
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(h.connection.detach())  # the real close now, whatever file objects still wrap it
    except OSError:
        pass


def _send_s3_error(h: BaseHTTPRequestHandler, status: int, path: str) -> None:
    code, message = S3_ERRORS[status]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
            f"</Message><Resource>{path}</Resource><RequestId>fault-proxy</RequestId></Error>").encode()
    h.send_response_only(status)
    h.send_header("Content-Type", "application/xml")
    h.send_header("Content-Length", "0" if h.command == "HEAD" else str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


__all__ = ["FaultProxy", "Rule", "Seen", "s3_operation"]
