"""RFC 6455 WebSocket, server side, stdlib only: the handshake and the frames ACS and TCS use.

Hand-written rather than a library (websockets, wsproto) because the server must take over
a socket that werkzeug's threaded dev server already accepted and parsed the upgrade
request of, and because the ECS double (stdlib-only, run by the lab host's python3) needs
the same hundred lines on the client side anyway; both are tested against RFC 6455's own
examples.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
from typing import Optional

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY = 1000, 1001, 1008
MAX_MESSAGE = 4 << 20  # ACS payloads are small; anything this big is a broken peer


class ConnectionClosed(Exception):
    """The peer closed the connection (close frame or EOF), or it broke."""


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # noqa: S324


def handshake_response(key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()


def encode_frame(opcode: int, payload: bytes, mask: Optional[bytes] = None) -> bytes:
    """One final frame; clients must mask (4-byte key), servers must not."""
    head = bytearray([0x80 | opcode])
    bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        head.append(bit | size)
    elif size < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", size)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", size)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _unmask(payload, mask)


def parse_frame(buffer: bytes) -> Optional[tuple[bool, int, bytes, int]]:
    """(fin, opcode, unmasked payload, bytes used) of the first frame, or None if incomplete."""
    if len(buffer) < 2:
        return None
    fin, opcode = bool(buffer[0] & 0x80), buffer[0] & 0x0F
    masked, size = bool(buffer[1] & 0x80), buffer[1] & 0x7F
    at = 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, at = struct.unpack("!H", buffer[2:4])[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, at = struct.unpack("!Q", buffer[2:10])[0], 10
    if size > MAX_MESSAGE:
        raise ConnectionClosed(f"frame of {size} bytes is over the limit")
    mask = b""
    if masked:
        if len(buffer) < at + 4:
            return None
        mask, at = bytes(buffer[at : at + 4]), at + 4
    if len(buffer) < at + size:
        return None
    payload = bytes(buffer[at : at + size])
    return fin, opcode, _unmask(payload, mask) if masked else payload, at + size


def _unmask(data: bytes, mask: bytes) -> bytes:
    # XOR through one big integer: fast enough without numpy, and stdlib only.
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


class WebSocket:
    """One established connection: text messages in and out; pings, pongs and close handled.

    `client=True` masks what it sends (the ECS double's side); the control plane is the server.
    """

    def __init__(self, sock: socket.socket, client: bool = False, buffered: bytes = b"") -> None:
        self._sock = sock
        self._client = client
        self._buffer = bytearray(buffered)
        self._write_lock = threading.Lock()
        self._parts: list[bytes] = []
        self.closed = False

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    def receive(self, timeout: Optional[float]) -> Optional[str]:
        """The next text message, or None when `timeout` passes first; ConnectionClosed at end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = parse_frame(bytes(self._buffer))
            if frame is None:
                if not self._fill(deadline):
                    return None
                continue
            fin, opcode, payload, used = frame
            del self._buffer[:used]
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._answer_close(payload)
                raise ConnectionClosed(_close_reason(payload))
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self._parts.append(payload)
                if fin:
                    message, self._parts = b"".join(self._parts), []
                    return message.decode("utf-8", "replace")

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if not self.closed:
            try:
                self._send(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
            except ConnectionClosed:
                pass
        self.shutdown()

    def shutdown(self) -> None:
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _answer_close(self, payload: bytes) -> None:
        if not self.closed:
            try:
                self._send(OP_CLOSE, payload[:2])
            except ConnectionClosed:
                pass
        self.shutdown()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4) if self._client else None
        with self._write_lock:
            if self.closed:
                raise ConnectionClosed("the connection is closed")
            try:
                self._sock.sendall(encode_frame(opcode, payload, mask))
            except OSError as exc:
                self.closed = True
                raise ConnectionClosed(str(exc)) from None

    def _fill(self, deadline: Optional[float]) -> bool:
        if self.closed:
            raise ConnectionClosed("the connection is closed")
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._sock.settimeout(left)
        else:
            self._sock.settimeout(None)
        try:
            chunk = self._sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except OSError as exc:
            self.closed = True
            raise ConnectionClosed(str(exc)) from None
        if not chunk:
            self.closed = True
            raise ConnectionClosed("end of stream")
        self._buffer += chunk
        return True


def _close_reason(payload: bytes) -> str:
    if len(payload) >= 2:
        code = struct.unpack("!H", payload[:2])[0]
        return f"close {code} {payload[2:].decode('utf-8', 'replace')}".strip()
    return "close"
