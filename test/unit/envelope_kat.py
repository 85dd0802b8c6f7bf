#!/usr/bin/env python3
"""envelope_kat.py -- known answers of the envelope format, computed apart.

Prints the expected envelopes of test_envelope.c's known-answer checks from
the published layout (src/envelope.h) and XChaCha20-Poly1305-IETF built here
from HChaCha20 and OpenSSL's ChaCha20-Poly1305 (Python's `cryptography`), so
the C test compares libsodium and our code against an independent
implementation.  Only needed when the format changes on purpose:

    python3 test/unit/envelope_kat.py
"""
import base64
import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20poly1305(key, nonce24, pt, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0" * 4 + nonce24[16:], pt, ad)


def envelope(key, nonce, key_id, category, kind, pt):
    header = bytes([1]) + struct.pack(">IH", key_id, category)
    return header + nonce + xchacha20poly1305(key, nonce, pt, header + kind)


KEY = bytes(range(32))
NONCE = bytes(range(0x40, 0x58))
VECTORS = [
    ("text, alice@example.com", 0x01020304, 0x0506, b"t", b"alice@example.com"),
    ("bytea, empty", 7, 3, b"b", b""),
]
for name, key_id, cat, kind, pt in VECTORS:
    env = envelope(KEY, NONCE, key_id, cat, kind, pt)
    print(f"{name}:\n  {env.hex()}\n  pv1:{base64.b64encode(env).decode()}")
