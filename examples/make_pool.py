"""Writes examples/pool.npy: 1,000 rows of 10-class probabilities, as a classifier would give for
an unlabeled pool. Most rows are confident; every 50th row is a near-uniform, uncertain one.
Only the standard library is used, so it runs anywhere Python does."""
import math
import random
import struct

rows, classes = 1000, 10
rng = random.Random(20261122)
values = []
for r in range(rows):
    sharpness = 0.3 if r % 50 == 7 else 4.0
    z = [rng.gauss(0.0, sharpness) for _ in range(classes)]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    values.extend(v / s for v in e)
header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {classes}), }}"
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open("examples/pool.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    f.write(struct.pack(f"<{len(values)}f", *values))
