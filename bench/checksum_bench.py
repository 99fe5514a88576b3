"""Internet checksum methods in CPython, in MB/s: what the segmentation hot path can afford.

    PYTHONPATH=forwarder python bench/checksum_bench.py [--seconds 0.5]

Per method: the ones'-complement sum of 45 MSS-sized (1420 byte) segments
of a 64 KB super packet, i.e. exactly the work TSO segmentation does per
TUN read.  Every method is first checked against the reference.
"""

from __future__ import annotations

import argparse
import array
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "forwarder"))

from flannel_forwarder import checksum as cs  # noqa: E402

MSS = 1420
SEGS = 45


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def m_reference_loop(data, off, n):
    return [fold(sum((data[i] << 8) | data[i + 1] for i in range(o, o + MSS, 2))) for o in range(off, off + n * MSS, MSS)]


def m_struct_unpack(data, off, n):
    fmt = struct.Struct(f">{MSS // 2}H")
    return [fold(sum(fmt.unpack_from(data, o))) for o in range(off, off + n * MSS, MSS)]


def m_array_sum(data, off, n):
    mv = memoryview(data)
    out = []
    for o in range(off, off + n * MSS, MSS):
        a = array.array("H")
        a.frombytes(mv[o : o + MSS])
        s = fold(sum(a))  # native order: swap the folded result, not the words
        out.append(((s & 0xFF) << 8 | s >> 8) if sys.byteorder == "little" else s)
    return out


def m_memoryview_cast_u32(data, off, n):
    mv = memoryview(data)
    out = []
    for o in range(off, off + n * MSS, MSS):
        s = fold(sum(mv[o : o + MSS].cast("I")))
        out.append(((s & 0xFF) << 8 | s >> 8) if sys.byteorder == "little" else s)
    return out


def m_int_from_bytes_mod(data, off, n):
    return [cs.fold(x) for x in cs.segment_sums(data, off, MSS, n)]


def m_numpy_rows(data, off, n):
    from flannel_forwarder.udp.ways import numpy as way

    return ((way.row_partial_sums(data, off, MSS, n) - 1) % 0xFFFF + 1).tolist()


METHODS = [
    ("reference loop (pure Python)", m_reference_loop),
    ("struct.unpack + sum", m_struct_unpack),
    ("array('H') + sum", m_array_sum),
    ("memoryview.cast('I') + sum", m_memoryview_cast_u32),
    ("int.from_bytes % 0xFFFF", m_int_from_bytes_mod),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    data = bytearray(os.urandom(SEGS * MSS + 64))
    off = 52
    want = m_reference_loop(data, off, SEGS)
    methods = list(METHODS)
    try:
        import numpy  # noqa: F401  pylint: disable=unused-import

        methods.append(("numpy, all segments at once", m_numpy_rows))
    except ImportError:
        pass
    nbytes = SEGS * MSS
    print(f"{SEGS} segments x {MSS} bytes per call")
    for name, fn in methods:
        got = fn(data, off, SEGS)
        norm = [0xFFFF if g == 0 else g for g in got]
        assert norm == [0xFFFF if w == 0 else w for w in want], name
        calls = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            fn(data, off, SEGS)
            calls += 1
        dt = time.perf_counter() - t0
        print(f"{name:32} {nbytes * calls / dt / 1e6:9.0f} MB/s  {dt / calls * 1e6:9.1f} us per 64 KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
