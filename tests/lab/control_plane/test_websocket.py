"""WebSocket framing: RFC 6455's own examples, and the double's client against our server."""

from __future__ import annotations

import socket
import threading

import pytest

from anywhere_agent.lab.control_plane import websocket
from anywhere_agent.lab.doubles import ecs_agent


def test_the_accept_key_matches_rfc_6455_section_1_3() -> None:
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_frames_match_rfc_6455_section_5_7_examples() -> None:
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello", bytes.fromhex("37fa213d")) == masked
    assert websocket.parse_frame(masked) == (True, websocket.OP_TEXT, b"Hello", len(masked))
    assert websocket.parse_frame(masked[:-1]) is None  # incomplete: wait for more bytes


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_every_length_encoding_round_trips(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = websocket.encode_frame(websocket.OP_BINARY, payload, b"\x01\x02\x03\x04")
    assert websocket.parse_frame(frame) == (True, websocket.OP_BINARY, payload, len(frame))


def test_the_double_client_and_the_server_exchange_messages_pings_and_close() -> None:
    left, right = socket.socketpair()
    server = websocket.WebSocket(left)
    client = ecs_agent.WsConn(right, b"")
    got: list[object] = []

    def serve() -> None:
        try:
            while True:
                message = server.receive(5.0)
                got.append(message)
                server.send_text(f"echo {message}")
        except websocket.ConnectionClosed as closed:
            got.append(str(closed))

    thread = threading.Thread(target=serve)
    thread.start()
    client.send_text("x" * 70_000)
    assert client.receive(5.0) == "echo " + "x" * 70_000
    left.sendall(websocket.encode_frame(websocket.OP_PING, b"hi"))
    client.send_text("after ping")
    assert client.receive(5.0) == "echo after ping"  # the pong went out unseen by the caller
    assert client.receive(0.05) is None  # a timeout between frames loses nothing
    client.close(1000, "bye")
    thread.join(5)
    assert got[-1] == "close 1000 bye"
    assert server.closed


def test_a_peer_that_vanishes_ends_the_session() -> None:
    left, right = socket.socketpair()
    server = websocket.WebSocket(left)
    right.close()
    with pytest.raises(websocket.ConnectionClosed):
        server.receive(1.0)
