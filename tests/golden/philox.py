"""scion's counter-based RNG (core/rng.cpp) in numpy, so fixture generators can create exactly the
tensors scion creates from the same seed: Philox-4x32-10 and Generator::uniform_ semantics
(element i uses counter offset + i; 53 random bits -> [0, 1); low + (high - low) * u in f64)."""
import numpy as np

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32(key, counter_lo, counter_hi=0):
    """Vectorized over counter_lo (np.uint64 array); returns four uint64 arrays of 32-bit words."""
    c = np.asarray(counter_lo, dtype=np.uint64)
    c0, c1 = c & MASK32, c >> np.uint64(32)
    hi = np.uint64(counter_hi)
    c2 = np.full_like(c0, hi & MASK32)
    c3 = np.full_like(c0, hi >> np.uint64(32))
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64((key >> 32) & 0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        n0 = (p1 >> np.uint64(32)) ^ c1 ^ k0
        n2 = (p0 >> np.uint64(32)) ^ c3 ^ k1
        c1, c3 = p1 & MASK32, p0 & MASK32
        c0, c2 = n0, n2
        k0 = (k0 + np.uint64(W0)) & MASK32
        k1 = (k1 + np.uint64(W1)) & MASK32
    return c0, c1, c2, c3


def uniform(n, low, high, seed, offset=0, stream=0):
    """float64 values of scion's uniform_(t, low, high, Generator(seed, stream)) for n elements."""
    w0, w1, _, _ = philox4x32(seed, np.arange(n, dtype=np.uint64) + np.uint64(offset), stream)
    v = ((w0 << np.uint64(21)) ^ (w1 >> np.uint64(11))) & np.uint64((1 << 53) - 1)
    u = v.astype(np.float64) * (1.0 / 9007199254740992.0)
    return low + (high - low) * u


def fnv1a64(text):
    """64-bit FNV-1a of a UTF-8 string: the per-tensor seed used by the model fixtures."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h
