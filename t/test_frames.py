"""Protocol errors in client frames: the server fails the connection with
the right close code, closes TCP, and everybody else keeps working."""

import pytest

import wsraw
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                   RawWS, build_frame)

pytestmark = pytest.mark.asan     # also run by make integration-asan

F = build_frame


def fail_case(srv, data, code, path="/echo", prefix=None, timeout=3.0):
    """Sends data (bytes, or a list of byte strings sent one write each),
    expects close `code` then TCP close; then checks a fresh client."""
    with RawWS.connect(srv.port, path=path) as ws:
        if prefix:
            for chunk, expect in prefix:
                ws.send(chunk)
                assert ws.recv_message() == expect
        for chunk in (data if isinstance(data, list) else [data]):
            try:
                ws.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        ws.expect_close(code, timeout=timeout)
    wsraw.echo_roundtrip(srv.port, path=path)


# -- masking ----------------------------------------------------------------

@pytest.mark.parametrize("opcode,payload", [
    (OP_TEXT, b"unmasked"), (OP_BINARY, b"\x00\x01"), (OP_PING, b"p"),
    (OP_TEXT, b""), (OP_CLOSE, b"\x03\xe8")])
def test_unmasked_frame_1002(srv, opcode, payload):
    fail_case(srv, F(opcode, payload, mask=False), 1002)


def test_unmasked_frame_after_valid_traffic_1002(srv):
    fail_case(srv, F(OP_TEXT, b"now unmasked", mask=False), 1002,
              prefix=[(F(OP_TEXT, b"ok"), (OP_TEXT, b"ok"))])


def test_unmasked_continuation_1002(srv):
    fail_case(srv, F(OP_TEXT, b"a", fin=False) + F(OP_CONT, b"b", mask=False),
              1002)


# -- reserved bits and opcodes --------------------------------------------

@pytest.mark.parametrize("rsv", [4, 2, 1, 7], ids=["rsv1", "rsv2", "rsv3",
                                                   "all"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING])
def test_rsv_bits_1002(srv, rsv, opcode):
    fail_case(srv, F(opcode, b"x", rsv=rsv), 1002)


def test_rsv_on_continuation_1002(srv):
    fail_case(srv, F(OP_TEXT, b"a", fin=False) + F(OP_CONT, b"b", rsv=4),
              1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_1002(srv, opcode):
    fail_case(srv, F(opcode, b"x"), 1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_reserved_opcode_inside_fragmented_message_1002(srv, opcode):
    fail_case(srv, F(OP_TEXT, b"a", fin=False) + F(opcode, b""), 1002)


# -- control frames ---------------------------------------------------------

@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
@pytest.mark.parametrize("n", [126, 200, 65536])
def test_control_payload_too_long_1002(srv, opcode, n):
    payload = b"\x03\xe8" + b"a" * (n - 2) if opcode == OP_CLOSE \
        else b"a" * n
    fail_case(srv, F(opcode, payload), 1002)


def test_control_payload_too_long_header_only_1002(srv):
    """Fails on the header alone: the 126+ payload is never sent."""
    fail_case(srv, F(OP_PING, b"", length=300), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_1002(srv, opcode):
    payload = b"\x03\xe8" if opcode == OP_CLOSE else b"frag"
    fail_case(srv, F(opcode, payload, fin=False), 1002)


def test_fragmented_ping_inside_message_1002(srv):
    fail_case(srv, F(OP_TEXT, b"a", fin=False) + F(OP_PING, b"", fin=False),
              1002)


# -- fragmentation sequencing ---------------------------------------------

@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_message_1002(srv, fin):
    fail_case(srv, F(OP_CONT, b"orphan", fin=fin), 1002)


def test_continuation_after_complete_message_1002(srv):
    fail_case(srv, F(OP_CONT, b"late"), 1002,
              prefix=[(F(OP_TEXT, b"a", fin=False) + F(OP_CONT, b"b"),
                       (OP_TEXT, b"ab"))])


@pytest.mark.parametrize("first,second", [
    (OP_TEXT, OP_TEXT), (OP_TEXT, OP_BINARY), (OP_BINARY, OP_TEXT),
    (OP_BINARY, OP_BINARY)])
@pytest.mark.parametrize("second_fin", [True, False])
def test_new_message_inside_fragmented_1002(srv, first, second, second_fin):
    fail_case(srv, F(first, b"part1", fin=False)
              + F(OP_CONT, b"part2", fin=False)
              + F(second, b"intruder", fin=second_fin), 1002)


# -- lengths ----------------------------------------------------------------

@pytest.mark.parametrize("length", [0x8000000000000000, 0xFFFFFFFFFFFFFFFF,
                                    0x8000000000000001])
@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT])
def test_64bit_length_top_bit_1002(srv, length, opcode):
    fail_case(srv, F(opcode, b"", length=length, form=64), 1002)


def test_64bit_length_top_bit_no_max_size_interference(srv):
    """Same on the 1k-limited endpoint: top bit is a protocol error."""
    fail_case(srv, F(OP_BINARY, b"", length=1 << 63, form=64), 1002,
              path="/echo_1k")


# -- mixed: garbage after a valid frame in the same write -----------------

def test_error_frame_behind_valid_frames_same_write(srv):
    """Valid frames before the bad one in the same TCP segment: their
    echoes may be sent or dropped when the connection is failed (RFC 6455
    7.1.7 allows both), but only in order, intact, then close 1002."""
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"one") + F(OP_BINARY, b"two")
                + F(OP_TEXT, b"bad", mask=False))
        ws.expect_close(1002)
        got = [(f.opcode, f.payload, f.fin) for f in ws.seen_before_close]
        want = [(OP_TEXT, b"one", True), (OP_BINARY, b"two", True)]
        assert got == want[:len(got)], got
    wsraw.echo_roundtrip(srv.port)


def test_error_frame_after_answered_frames(srv):
    with RawWS.connect(srv.port) as ws:
        ws.send(F(OP_TEXT, b"one") + F(OP_BINARY, b"two"))
        assert ws.recv_message() == (OP_TEXT, b"one")
        assert ws.recv_message() == (OP_BINARY, b"two")
        ws.send(F(OP_TEXT, b"bad", mask=False))
        ws.expect_close(1002)
    wsraw.echo_roundtrip(srv.port)


def test_error_frame_split_bytewise(srv):
    with RawWS.connect(srv.port) as ws:
        try:
            ws.send_bytewise(F(5, b"xyz"), delay=0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass
        ws.expect_close(1002)
    wsraw.echo_roundtrip(srv.port)


def test_protocol_error_does_not_disturb_other_clients(srv):
    """A client in the middle of a fragmented message and an idle client
    survive another connection's protocol error."""
    with RawWS.connect(srv.port) as a, RawWS.connect(srv.port) as b:
        a.send(F(OP_TEXT, b"hel", fin=False))
        fail_case(srv, F(OP_TEXT, b"x", rsv=4), 1002)
        a.send(F(OP_CONT, b"lo"))
        assert a.recv_message() == (OP_TEXT, b"hello")
        b.send(F(OP_BINARY, b"\x00" * 1000))
        assert b.recv_message() == (OP_BINARY, b"\x00" * 1000)


def test_rt_endpoint_protocol_error_1002(srv):
    """The product endpoint runs the same frame parser."""
    with RawWS.connect(srv.port, path="/rt") as ws:
        ws.send(F(OP_PING, b"x", mask=False))
        ws.expect_close(1002)
    with RawWS.connect(srv.port, path="/rt") as ws:
        ws.send(F(OP_PING, b"still"))
        f = ws.recv_data_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"still")
