"""Client-initiated close handshake."""

import struct

import pytest

import wsraw
from wsraw import OP_CLOSE, OP_CONT, OP_TEXT, RawWS, build_frame

pytestmark = pytest.mark.asan     # also run by make integration-asan

VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
         3000, 3999, 4000, 4001, 4999]
INVALID = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID)
@pytest.mark.parametrize("path", ["/echo", "/rt"])
def test_valid_close_code_echoed(srv, path, code):
    with RawWS.connect(srv.port, path=path) as ws:
        ws.send_close(code)
        f = ws.expect_close(code)
        assert f.opcode == OP_CLOSE


@pytest.mark.parametrize("reason", [b"bye", "d\u00e9j\u00e0 vu \u4e16".encode(),
                                    b"r" * 123])
def test_close_with_reason_echoes_code(srv, reason):
    with RawWS.connect(srv.port) as ws:
        ws.send_close(4001, reason)
        ws.expect_close(4001)


@pytest.mark.parametrize("path", ["/echo", "/rt"])
def test_empty_close(srv, path):
    with RawWS.connect(srv.port, path=path) as ws:
        ws.send_frame(OP_CLOSE, b"")
        f = ws.expect_close((1000, None))
        assert f.payload in (b"", struct.pack("!H", 1000)) or \
            f.close_code == 1000


@pytest.mark.parametrize("code", INVALID)
def test_invalid_close_code_1002(srv, code):
    with RawWS.connect(srv.port) as ws:
        ws.send_close(code)
        ws.expect_close(1002)
    wsraw.echo_roundtrip(srv.port)


@pytest.mark.parametrize("byte", [b"\x03", b"\x00", b"\xe8"])
def test_one_byte_close_payload_1002(srv, byte):
    with RawWS.connect(srv.port) as ws:
        ws.send_frame(OP_CLOSE, byte)
        ws.expect_close(1002)
    wsraw.echo_roundtrip(srv.port)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80",
                                    b"trunc\xe2\x82"])
def test_non_utf8_close_reason_1007(srv, reason):
    with RawWS.connect(srv.port) as ws:
        ws.send_close(1000, reason)
        ws.expect_close(1007)
    wsraw.echo_roundtrip(srv.port)


def test_close_between_fragments(srv):
    """A close is a control frame: allowed in the middle of a message."""
    with RawWS.connect(srv.port) as ws:
        ws.send(build_frame(OP_TEXT, b"half", fin=False))
        ws.send_close(1000, b"leaving")
        ws.expect_close(1000)


def test_close_after_messages_in_same_write(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(build_frame(OP_TEXT, b"last words")
                + build_frame(OP_CLOSE, wsraw.close_payload(1001)))
        assert ws.recv_message() == (OP_TEXT, b"last words")
        ws.expect_close(1001)


def test_frames_after_close_are_ignored(srv):
    """Nothing is echoed after the close handshake started."""
    with RawWS.connect(srv.port) as ws:
        ws.send(build_frame(OP_CLOSE, wsraw.close_payload(1000))
                + build_frame(OP_TEXT, b"ghost"))
        f = ws.recv_data_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000, f
        assert ws.wait_tcp_close(3.0)


def test_close_bytewise(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send_bytewise(build_frame(OP_CLOSE, wsraw.close_payload(3000, b"x")))
        ws.expect_close(3000)


def test_close_continuation_state_irrelevant(srv):
    """Close with a valid code after a complete fragmented message."""
    with RawWS.connect(srv.port) as ws:
        ws.send(build_frame(OP_TEXT, b"a", fin=False)
                + build_frame(OP_CONT, b"b"))
        assert ws.recv_message() == (OP_TEXT, b"ab")
        ws.send_close(4999)
        ws.expect_close(4999)
