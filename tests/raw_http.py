"""HTTP/1.1 over a bare socket, for tests of how a server treats a body it should not read.

Clients such as httpx send a whole body before they look at the answer; these tests need
to see the answer *while* the body is still streaming, and to count how much of it the
server took before answering.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass
class StreamResult:
    """What came back: the status (0 if none), the raw response, bytes sent, and when."""

    status: int
    response: bytes
    sent: int
    seconds: float
    closed: bool

    @property
    def body(self) -> bytes:
        return self.response.partition(b"\r\n\r\n")[2]


def stream_body(
    url_host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    total: int,
    *,
    chunked: bool = True,
    content_length: int | None = None,
    prefix: bytes = b"",
    timeout_s: float = 60.0,
) -> StreamResult:
    """POST ``prefix`` then up to ``total`` zero bytes to ``path``, stopping as soon as the
    server answers.

    ``chunked`` sends ``Transfer-Encoding: chunked``; otherwise ``Content-Length`` is
    ``content_length`` (default ``total``), which may lie. Returns once the answer has
    been read (the server closed, or sent a whole ``content-length`` body) or the body is
    all sent and ``timeout_s`` passed.
    """
    started = time.monotonic()
    sock = socket.create_connection((url_host, port), timeout=timeout_s)
    lines = [f"POST {path} HTTP/1.1", f"host: {url_host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if chunked:
        lines.append("transfer-encoding: chunked")
    else:
        lines.append(f"content-length: {total if content_length is None else content_length}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if prefix:
        sock.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n" if chunked else prefix)
    payload = b"\0" * CHUNK
    framed = f"{CHUNK:x}\r\n".encode() + payload + b"\r\n" if chunked else payload
    sent = 0
    response = b""
    closed = False
    deadline = started + timeout_s
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.5)
            if readable:
                data = sock.recv(1 << 16)
                if not data:
                    closed = True
                    break
                response += data
                if _complete(response):
                    break
                continue
            if writable:
                try:
                    sock.send(framed)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sent += CHUNK
                if sent >= total and chunked:
                    sock.sendall(b"0\r\n\r\n")
        # Read what is left of the answer (a reset may cut it short).
        sock.settimeout(5)
        while not _complete(response):
            data = sock.recv(1 << 16)
            if not data:
                closed = True
                break
            response += data
        if _complete(response) and not closed:
            sock.settimeout(2)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
    except (ConnectionResetError, BrokenPipeError, TimeoutError, OSError):
        closed = True
    finally:
        sock.close()
    return StreamResult(_status(response), response, sent, time.monotonic() - started, closed)


def _status(response: bytes) -> int:
    first = response.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else 0


def _complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False
