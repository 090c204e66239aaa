"""Write the byte-exact test vectors of accord.crypto's formats, one JSON file per format.

Run it from anywhere: ``.venv/bin/python tests/vectors/generate.py``. Every row is made
with the library and then recomputed by a slow, independent reference written here
from the specifications (RFC 7748 X25519 ladder, RFC 5869 HKDF with ``hmac``, RFC 8032
Ed25519 in plain integers, AES-CTR read word by word, Shamir by naive polynomial
evaluation); a mismatch stops the run and writes nothing. Inputs are derived from
SHAKE-256 of fixed labels, so a rerun writes the same files.

``tests/crypto/test_vectors.py`` loads the files and checks that the library encodes
and decodes the same rows byte for byte. Once released, a copy of each file belongs
in ``tests/vectors/compat/`` and must keep passing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accord.crypto import agreement, envelope, identity, prg, shamir

HERE = Path(__file__).resolve().parent
FORMAT_VERSION = 1


def material(label: str, length: int) -> bytes:
    """Fixed pseudo-random bytes for a label (SHAKE-256)."""
    return hashlib.shake_256(b"accord/vectors/" + label.encode()).digest(length)


def stream_source(data: bytes) -> Callable[[int], bytes]:
    """A ``random_bytes`` that hands out ``data`` in order and refuses to run past it."""
    position = 0

    def take(count: int) -> bytes:
        nonlocal position
        if position + count > len(data):
            raise RuntimeError("the fixed random stream ran out")
        chunk = data[position : position + count]
        position += count
        return chunk

    return take


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"reference mismatch: {what}")


# --- RFC 7748 X25519 and RFC 5869 HKDF, from the specifications ------------------------

P25519 = 2**255 - 19


def ref_x25519(scalar: bytes, u: bytes) -> bytes:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k_int = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (k_int >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = x2 + z2, x2 - z2
        aa, bb = a * a % P25519, b * b % P25519
        e = (aa - bb) % P25519
        c, d = x3 + z3, x3 - z3
        da, cb = d * a % P25519, c * b % P25519
        x3 = (da + cb) ** 2 % P25519
        z3 = x1 * (da - cb) ** 2 % P25519
        x2 = aa * bb % P25519
        z2 = e * (aa + 121665 * e) % P25519
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P25519 - 2, P25519) % P25519).to_bytes(32, "little")


def ref_x25519_public(private: bytes) -> bytes:
    return ref_x25519(private, (9).to_bytes(32, "little"))


def ref_hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def ref_frame(*fields: str | bytes | int) -> bytes:
    out = b""
    for value in fields:
        if isinstance(value, int):
            data = value.to_bytes(8, "big")
        elif isinstance(value, str):
            data = value.encode("utf-8")
        else:
            data = value
        out += len(data).to_bytes(4, "big") + data
    return out


# --- RFC 8032 Ed25519, section 6, in plain integers ------------------------------------

ED_D = -121665 * pow(121666, -1, P25519) % P25519
ED_Q = 2**252 + 27742317777372353535851937790883648493
ED_SQRT_M1 = pow(2, (P25519 - 1) // 4, P25519)
EdPoint = tuple[int, int, int, int]


def ed_add(a: EdPoint, b: EdPoint) -> EdPoint:
    p = P25519
    aa = (a[1] - a[0]) * (b[1] - b[0]) % p
    bb = (a[1] + a[0]) * (b[1] + b[0]) % p
    cc = 2 * a[3] * b[3] * ED_D % p
    dd = 2 * a[2] * b[2] % p
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def ed_mul(scalar: int, point: EdPoint) -> EdPoint:
    result: EdPoint = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = ed_add(result, point)
        point = ed_add(point, point)
        scalar >>= 1
    return result


def ed_recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, -1, P25519) % P25519
    x = pow(x2, (P25519 + 3) // 8, P25519)
    if (x * x - x2) % P25519:
        x = x * ED_SQRT_M1 % P25519
    if x & 1 != sign:
        x = P25519 - x
    return x


ED_GY = 4 * pow(5, -1, P25519) % P25519
ED_GX = ed_recover_x(ED_GY, 0)
ED_G: EdPoint = (ED_GX, ED_GY, 1, ED_GX * ED_GY % P25519)


def ed_compress(point: EdPoint) -> bytes:
    z_inverse = pow(point[2], -1, P25519)
    x, y = point[0] * z_inverse % P25519, point[1] * z_inverse % P25519
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def ed_expand(secret: bytes) -> tuple[int, bytes]:
    digest = hashlib.sha512(secret).digest()
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, digest[32:]


def ref_ed25519_public(secret: bytes) -> bytes:
    return ed_compress(ed_mul(ed_expand(secret)[0], ED_G))


def ref_ed25519_sign(secret: bytes, message: bytes) -> bytes:
    a, prefix = ed_expand(secret)
    public = ed_compress(ed_mul(a, ED_G))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % ED_Q
    big_r = ed_compress(ed_mul(r, ED_G))
    h = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % ED_Q
    return big_r + ((r + h * a) % ED_Q).to_bytes(32, "little")


# --- the formats ----------------------------------------------------------------------


def agreement_vectors() -> dict[str, Any]:
    rfc_alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    rfc_bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    cases = [
        (rfc_alice, rfc_bob, "rfc7748", 0, "alice", "bob"),
        (material("agree/1/u", 32), material("agree/1/v", 32), "fed-1", 1, "P1", "P2"),
        (material("agree/2/u", 32), material("agree/2/v", 32), "fed-1", 1, "P2", "P1"),
        (material("agree/3/u", 32), material("agree/3/v", 32), "fédération-β", 2**64 - 1, "b", "a"),
        (material("agree/4/u", 32), material("agree/4/v", 32), "", 7, "site-ab", "site-a"),
    ]
    rows = []
    for private_u, private_v, federation_id, round_number, u, v in cases:
        public_u = agreement.generate_keypair(stream_source(private_u)).public
        public_v = agreement.generate_keypair(stream_source(private_v)).public
        seed = agreement.pairwise_seed(
            private_u, public_v, federation_id=federation_id, round=round_number, u=u, v=v
        )
        check(public_u == ref_x25519_public(private_u), f"X25519 public key of {u}")
        check(public_v == ref_x25519_public(private_v), f"X25519 public key of {v}")
        info = b"accord/v1/pairwise" + ref_frame(federation_id, round_number, min(u, v), max(u, v))
        expected = ref_hkdf_sha256(ref_x25519(private_u, public_v), info, 16)
        check(seed == expected, f"pairwise seed {u}-{v}")
        check(ref_x25519(private_v, public_u) == ref_x25519(private_u, public_v), "X25519 symmetry")
        rows.append(
            {
                "private_u": private_u.hex(),
                "private_v": private_v.hex(),
                "public_u": public_u.hex(),
                "public_v": public_v.hex(),
                "federation_id": federation_id,
                "round": round_number,
                "u": u,
                "v": v,
                "seed": seed.hex(),
            }
        )
    check(
        rows[0]["public_u"] == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
        "RFC 7748 public key",
    )
    refused = [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ]
    for key in refused:
        check(ref_x25519(rfc_alice, key) == bytes(32), f"low-order point {key.hex()}")
    return {
        "format": "accord/v1/pairwise",
        "version": FORMAT_VERSION,
        "description": (
            "X25519 keys (raw, RFC 7748) and pairwise seeds s_uv = HKDF-SHA256(X25519(sk_u, "
            "pk_v), salt=None, info='accord/v1/pairwise' || F(federation_id) || F(round) || "
            "F(min(u,v)) || F(max(u,v)), 16 bytes); F = u32 BE length || bytes, ints as u64 BE. "
            "refused_public_keys: peer keys that must raise IntegrityError."
        ),
        "rows": rows,
        "refused_public_keys": [key.hex() for key in refused],
    }


def prg_vectors() -> dict[str, Any]:
    cases = [
        (0, 0, 16),
        (0, 1, 8),
        (0, 8, 32),
        (1, 5, 12),
        (3, 9, 16),
        (4, 4, 24),
        (1000, 37, 16),
        (2**32 + 1, 6, 32),
        (2**64 - 3, 3, 8),
        (7, 3, 1),
    ]
    rows = []
    for index, (start, count, bits) in enumerate(cases):
        seed = material(f"prg/{index}", 16)
        values = prg.expand(seed, start, count, bits)
        # Reference: seek by whole blocks only, then walk the plain stream word by word.
        block = start * 4 // 16
        cipher = Cipher(algorithms.AES(seed), modes.CTR(block.to_bytes(16, "big")))
        stream = cipher.encryptor().update(b"\0" * (16 + 4 * count + 16))
        offset = start * 4 - block * 16
        expected = [
            int.from_bytes(stream[offset + 4 * i : offset + 4 * i + 4], "little") % (1 << bits)
            for i in range(count)
        ]
        if start + count <= 4096:
            whole = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
            full = whole.update(b"\0" * (4 * (start + count)))
            check(
                expected
                == [
                    int.from_bytes(full[4 * i : 4 * i + 4], "little") % (1 << bits)
                    for i in range(start, start + count)
                ],
                f"PRG row {index} against the whole stream",
            )
        check(values.tolist() == expected, f"PRG row {index}")
        rows.append(
            {
                "seed": seed.hex(),
                "start": start,
                "count": count,
                "modulus_bits": bits,
                "values": values.astype("<u4").tobytes().hex(),
            }
        )
    return {
        "format": "accord/v1/prg",
        "version": FORMAT_VERSION,
        "description": (
            "AES-128-CTR keyed with seed, counter block 0 (16 bytes, big-endian); element i is "
            "the little-endian uint32 at keystream bytes [4i, 4i+4) mod 2^modulus_bits. "
            "values: elements [start, start+count) as little-endian uint32, hex."
        ),
        "rows": rows,
    }


def shamir_vectors() -> dict[str, Any]:
    cases = [(16, 1, 1), (16, 1, 3), (32, 2, 3), (32, 3, 5), (16, 5, 9), (64, 4, 4), (0, 2, 2)]
    rows = []
    for index, (length, threshold, count) in enumerate(cases):
        secret = material(f"shamir/{index}/secret", length)
        random = material(f"shamir/{index}/random", 66 * (threshold - 1))
        shares = shamir.split(secret, threshold, count, random_bytes=stream_source(random))
        # Reference: coefficients straight from the stream, f(x) = sum c_i x^i.
        mask = (1 << 521) - 1
        coefficients = [int.from_bytes(secret, "big")] + [
            int.from_bytes(random[66 * i : 66 * i + 66], "big") & mask for i in range(threshold - 1)
        ]
        for share in shares:
            y = sum(c * pow(share.x, i, shamir.PRIME) for i, c in enumerate(coefficients))
            encoded = (
                bytes([1]) + share.x.to_bytes(2, "big") + (y % shamir.PRIME).to_bytes(66, "big")
            )
            check(share.to_bytes() == encoded, f"Shamir row {index}, share {share.x}")
        check(shamir.combine(shares[::-1], threshold, length) == secret, f"Shamir row {index}")
        rows.append(
            {
                "secret": secret.hex(),
                "threshold": threshold,
                "count": count,
                "random": random.hex(),
                "shares": [share.to_bytes().hex() for share in shares],
            }
        )
    return {
        "format": "accord/v1/shamir-share",
        "version": FORMAT_VERSION,
        "description": (
            "t-of-n Shamir over GF(2^521 - 1): secret = big-endian integer, coefficients a_1.. "
            "a_{t-1} each 66 bytes of random with the top 7 bits cleared; share x = 1..n is "
            "0x01 || x (u16 BE) || f(x) (66 bytes BE)."
        ),
        "rows": rows,
    }


def envelope_vectors() -> dict[str, Any]:
    cases = [
        (b"", b""),
        (b"x", b"fed-1|epoch 0|P1|P2"),
        (material("envelope/2/plaintext", 138), b"fed-1|round 3|from P1|to P2"),
        (material("envelope/3/plaintext", 1000), material("envelope/3/aad", 64)),
    ]
    rows = []
    for index, (plaintext, aad) in enumerate(cases):
        recipient_private = material(f"envelope/{index}/recipient", 32)
        recipient_public = ref_x25519_public(recipient_private)
        random = material(f"envelope/{index}/random", 44)
        sealed = envelope.seal(
            plaintext, recipient_public, aad=aad, random_bytes=stream_source(random)
        )
        ephemeral_public = ref_x25519_public(random[:32])
        key = ref_hkdf_sha256(
            ref_x25519(random[:32], recipient_public),
            b"accord/v1/envelope" + ephemeral_public + recipient_public,
            32,
        )
        expected = (
            b"\x01"
            + ephemeral_public
            + random[32:]
            + AESGCM(key).encrypt(random[32:], plaintext, aad)
        )
        check(sealed == expected, f"envelope row {index}")
        check(envelope.open(sealed, recipient_private, aad=aad) == plaintext, f"open row {index}")
        rows.append(
            {
                "recipient_private": recipient_private.hex(),
                "recipient_public": recipient_public.hex(),
                "plaintext": plaintext.hex(),
                "aad": aad.hex(),
                "random": random.hex(),
                "envelope": sealed.hex(),
            }
        )
    return {
        "format": "accord/v1/envelope",
        "version": FORMAT_VERSION,
        "description": (
            "0x01 || E (32) || nonce (12) || AES-256-GCM(k, nonce, plaintext, aad); random = the "
            "ephemeral X25519 private key (32 bytes) then the nonce (12 bytes); k = HKDF-SHA256("
            "X25519(e, R), salt=None, info='accord/v1/envelope' || E || R, 32 bytes)."
        ),
        "rows": rows,
    }


def identity_vectors() -> dict[str, Any]:
    digest_cases = [
        ("fed-1", 0, "ADVERTISE", "P1", 0, bytes(32)),
        ("fed-1", 3, "UPLOAD", "P2", 41, hashlib.sha256(b"chunk").digest()),
        ("fédération-β", 2**64 - 1, "UNMASK", "site-é", 2**64 - 1, b""),
    ]
    digests = []
    for federation_id, round_number, stage, participant, sequence, payload in digest_cases:
        digest = identity.message_digest(
            federation_id=federation_id,
            round=round_number,
            stage=stage,
            participant=participant,
            sequence=sequence,
            payload_digest=payload,
        )
        framed = ref_frame(federation_id, round_number, stage, participant, sequence, payload)
        check(digest == hashlib.sha256(b"accord/v1/msg" + framed).digest(), "message digest")
        digests.append(
            {
                "federation_id": federation_id,
                "round": round_number,
                "stage": stage,
                "participant": participant,
                "sequence": sequence,
                "payload_digest": payload.hex(),
                "digest": digest.hex(),
            }
        )
    statements = []
    for index, (federation_id, round_number, participant) in enumerate(
        [("fed-1", 1, "P1"), ("fédération-β", 2**40, "site-é")]
    ):
        encryption_public = ref_x25519_public(material(f"identity/keys/{index}/c", 32))
        masking_public = ref_x25519_public(material(f"identity/keys/{index}/s", 32))
        statement = identity.keys_statement(
            federation_id=federation_id,
            round=round_number,
            participant=participant,
            encryption_public=encryption_public,
            masking_public=masking_public,
        )
        expected = b"accord/v1/keys" + ref_frame(
            federation_id, round_number, participant, encryption_public, masking_public
        )
        check(statement == expected, "keys statement")
        statements.append(
            {
                "federation_id": federation_id,
                "round": round_number,
                "participant": participant,
                "encryption_public": encryption_public.hex(),
                "masking_public": masking_public.hex(),
                "statement": statement.hex(),
            }
        )
    messages = [
        b"",
        bytes.fromhex(digests[1]["digest"]),
        bytes.fromhex(statements[0]["statement"]),
        material("identity/long", 1000),
    ]
    signatures = []
    for index, message in enumerate(messages):
        private = material(f"identity/{index}/private", 32)
        public = identity.generate_identity(stream_source(private)).public
        signature = identity.sign(private, message)
        check(public == ref_ed25519_public(private), f"Ed25519 public key {index}")
        check(signature == ref_ed25519_sign(private, message), f"Ed25519 signature {index}")
        identity.verify(public, message, signature, what=f"vector {index}")
        signatures.append(
            {
                "private": private.hex(),
                "public": public.hex(),
                "message": message.hex(),
                "signature": signature.hex(),
            }
        )
    return {
        "format": "accord/v1/identity",
        "version": FORMAT_VERSION,
        "description": (
            "Ed25519 (RFC 8032, raw 32-byte keys, deterministic signatures); message digests "
            "sha256('accord/v1/msg' || F(federation_id) || F(round) || F(stage) || "
            "F(participant) || F(sequence) || F(payload_digest)); key statements "
            "'accord/v1/keys' || F(federation_id) || F(round) || F(participant) || "
            "F(encryption_public) || F(masking_public); F = u32 BE length || bytes, ints as "
            "u64 BE."
        ),
        "signatures": signatures,
        "message_digests": digests,
        "keys_statements": statements,
    }


def self_test_references() -> None:
    """Check the reference code itself against the RFCs' published answers."""
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    check(ref_x25519(alice, bob_public) == shared, "RFC 7748 section 6.1")
    ikm = bytes.fromhex("0b" * 22)
    salt_free = ref_hkdf_sha256(ikm, b"", 42)
    check(
        salt_free.hex() == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8",
        "RFC 5869 test case 3",
    )
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    check(
        ref_ed25519_sign(secret, b"").hex()
        == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        "RFC 8032 test 1",
    )


def main() -> int:
    self_test_references()
    documents = {
        "agreement.json": agreement_vectors(),
        "prg.json": prg_vectors(),
        "shamir.json": shamir_vectors(),
        "envelope.json": envelope_vectors(),
        "identity.json": identity_vectors(),
    }
    for name, document in documents.items():
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
