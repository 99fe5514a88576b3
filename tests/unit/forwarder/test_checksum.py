import os
import random

import pytest

from flannel_forwarder import checksum as cs
from fwd_packets import SRC, DST, udp_datagram


@pytest.mark.parametrize("n", [0, 1, 2, 3, 19, 20, 21, 64, 1447, 1448, 1500, 9001])
def test_checksum_matches_reference(n):
    rnd = random.Random(n)
    for _round in range(20):
        data = bytes(rnd.getrandbits(8) for _byte in range(n))
        assert cs.checksum(data) == cs.reference_checksum(data)


@pytest.mark.parametrize("data", [b"", b"\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\xff", b"\x00\x01\xff\xfe"])
def test_zero_and_all_ones_corner_cases(data):
    # 0xFFFF and 0 are both "zero" in ones' complement; the fast method must
    # pick the same representation as the carry-folding reference.
    assert cs.checksum(data) == cs.reference_checksum(data)


def test_fold_is_end_around_carry():
    for total in [0, 1, 0xFFFF, 0x10000, 0x1FFFE, 0xFFFF * 7, 123456789]:
        s = total
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        assert cs.fold(total) == s


def test_transport_checksum_udp_never_zero():
    # Find a payload whose UDP checksum would be 0, then check it is sent as 0xFFFF.
    hdr = bytes(8)
    base = cs.fold(cs.pseudo_header_sum(SRC, DST, 17, 10) + cs.raw_sum(hdr))
    word = (0xFFFF - base) & 0xFFFF  # makes the sum 0xFFFF -> checksum 0
    seg = hdr + word.to_bytes(2, "big")
    assert cs.transport_checksum(SRC, DST, 17, seg, udp=False) == 0
    assert cs.transport_checksum(SRC, DST, 17, seg, udp=True) == 0xFFFF


def test_transport_checksum_matches_reference():
    payload = os.urandom(333)
    seg = bytearray(udp_datagram(SRC, DST, payload))  # (its checksum by reference_checksum)
    want = int.from_bytes(seg[6:8], "big")
    seg[6:8] = b"\0\0"
    assert cs.transport_checksum(SRC, DST, 17, seg, udp=True) == want


def test_known_answers():
    # RFC 1071, 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2, whose complement is the checksum
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert cs.ones_sum(data) == 0xDDF2
    assert cs.checksum(data) == cs.reference_checksum(data) == 0x220D
    # the common textbook IPv4 header (192.168.0.1 -> 192.168.0.199, UDP), checksum field zeroed: 0xb861
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert cs.checksum(hdr) == cs.reference_checksum(hdr) == 0xB861


@pytest.mark.parametrize("seg_len", [1, 2, 3, 4, 7, 100, 1447, 1448])
@pytest.mark.parametrize("start", [0, 1, 3, 52])
def test_segment_sums(seg_len, start):
    data = os.urandom(start + seg_len * 9 + 5)
    got = cs.segment_sums(data, start, seg_len, 9)
    for i, g in enumerate(got):
        chunk = data[start + i * seg_len : start + (i + 1) * seg_len]
        assert cs.fold(g) == cs.ones_sum(chunk) or (cs.fold(g) in (0, 0xFFFF) and cs.ones_sum(chunk) in (0, 0xFFFF))
