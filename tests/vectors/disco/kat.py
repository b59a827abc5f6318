# Independent computation of the disco known-answer vector (X25519 + HSalsa20 +
# XSalsa20-Poly1305 written out from the specs; X25519/Poly1305 from 'cryptography').
import struct
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.poly1305 import Poly1305

def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
def qr(x, a, b, c, d):
    x[b] ^= rotl((x[a] + x[d]) & 0xffffffff, 7)
    x[c] ^= rotl((x[b] + x[a]) & 0xffffffff, 9)
    x[d] ^= rotl((x[c] + x[b]) & 0xffffffff, 13)
    x[a] ^= rotl((x[d] + x[c]) & 0xffffffff, 18)
def rounds(x):
    for _ in range(10):
        qr(x, 0, 4, 8, 12); qr(x, 5, 9, 13, 1); qr(x, 10, 14, 2, 6); qr(x, 15, 3, 7, 11)
        qr(x, 0, 1, 2, 3); qr(x, 5, 6, 7, 4); qr(x, 10, 11, 8, 9); qr(x, 15, 12, 13, 14)
SIGMA = struct.unpack('<4I', b'expand 32-byte k')
def state(key, inp16):
    k = struct.unpack('<8I', key); i = struct.unpack('<4I', inp16)
    return [SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], i[0], i[1], i[2], i[3],
            SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3]]
def hsalsa20(key, inp16):
    x = state(key, inp16); rounds(x)
    return struct.pack('<8I', *[x[j] for j in (0, 5, 10, 15, 6, 7, 8, 9)])
def salsa20_stream(key, nonce8, n):
    out = b''; ctr = 0
    while len(out) < n:
        s = state(key, nonce8 + struct.pack('<Q', ctr)); x = list(s); rounds(x)
        out += struct.pack('<16I', *[(x[j] + s[j]) & 0xffffffff for j in range(16)]); ctr += 1
    return out[:n]
def box(m, nonce, peer_pub, my_priv):
    shared = X25519PrivateKey.from_private_bytes(my_priv).exchange(
        __import__('cryptography.hazmat.primitives.asymmetric.x25519', fromlist=['X']).X25519PublicKey.from_public_bytes(peer_pub))
    k = hsalsa20(shared, bytes(16))
    sub = hsalsa20(k, nonce[:16])
    st = salsa20_stream(sub, nonce[16:], 32 + len(m))
    c = bytes(a ^ b for a, b in zip(m, st[32:]))
    return Poly1305.generate_tag(st[:32], c) + c
def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
a_priv = bytes(range(1, 33)); b_priv = bytes(range(33, 65)); nonce = bytes(range(100, 124))
a_pub, b_pub = pub(a_priv), pub(b_priv)
txid = bytes(range(0xa0, 0xac)); nodekey = bytes([0x55]) * 32
payload = bytes([1, 0]) + txid + nodekey
pkt = b'WM\xf0\x9f\x92\xac' + a_pub + nonce + box(payload, nonce, b_pub, a_priv)
print('a_pub', a_pub.hex()); print('b_pub', b_pub.hex()); print('pkt', len(pkt)); print(pkt.hex())
