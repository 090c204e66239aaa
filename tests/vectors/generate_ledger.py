"""Write ``tests/vectors/ledger.json``: a small signed ledger, byte-exact, and its signed head.

Run it from anywhere: ``.venv/bin/python tests/vectors/generate_ledger.py``. The ledger is
made with ``accord.crypto.ledger_chain`` and every line is then rebuilt by a slow reference
written here from the module's docstring: canonical JSON by hand (sorted keys, no
whitespace, ASCII escapes), the entry hash with ``ref_frame`` and ``hashlib``, and the
Ed25519 signatures with ``generate.py``'s integer implementation of RFC 8032. A mismatch
stops the run and writes nothing. The key comes from SHAKE-256 of a fixed label, so a
rerun writes the same file.

``tests/crypto/test_ledger.py`` checks that the library writes the same lines, that they
verify, and that the signed head encodes to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import check, material, ref_ed25519_public, ref_ed25519_sign, ref_frame

from accord.crypto import identity
from accord.crypto import ledger_chain as ledger
from accord.crypto.ledger_encoding import decimal
from accord.crypto.ledger_verify import verify_chain

HERE = Path(__file__).resolve().parent
FORMAT_VERSION = 1
LEDGER_ID = "city-safety/participant/energy"

ENTRIES: list[tuple[str, dict[str, Any]]] = [
    (
        "round",
        {
            "round": 1,
            "profile": "ckks+masks",
            "samples": 256,
            "sample_dp": {
                "mechanism": "dp-sgd",
                "accountant": "rdp",
                "noise_multiplier": decimal(1.1),
                "sample_rate": decimal(0.0625),
                "steps": 20,
                "steps_total": 20,
                "max_grad_norm": decimal(1.0),
                "delta": decimal(1e-5),
                "epsilon": decimal(2.718281828459045),
            },
            "note": "caf\u00e9 \u2713",
            "upload": {"sha256": hashlib.sha256(b"chunks").hexdigest(), "chunks": 3},
        },
    ),
    ("applied", {"round": 1, "validation": {"metric": "accuracy", "gain": decimal(0.05)}}),
]


def ref_json(value: Any) -> str:
    """Canonical JSON written by hand, independently of ``json.dumps``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        out = ['"']
        for char in value:
            code = ord(char)
            if char == '"':
                out.append('\\"')
            elif char == "\\":
                out.append("\\\\")
            elif char == "\n":
                out.append("\\n")
            elif char == "\r":
                out.append("\\r")
            elif char == "\t":
                out.append("\\t")
            elif char == "\b":
                out.append("\\b")
            elif char == "\f":
                out.append("\\f")
            elif code < 0x20 or code > 0x7E:
                if code > 0xFFFF:
                    code -= 0x10000
                    out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
                else:
                    out.append(f"\\u{code:04x}")
            else:
                out.append(char)
        out.append('"')
        return "".join(out)
    if isinstance(value, list):
        return "[" + ",".join(ref_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{ref_json(k)}:{ref_json(value[k])}" for k in sorted(value)) + "}"
    raise SystemExit(f"reference: {type(value).__name__} is not allowed")


def ref_entry(
    secret: bytes, seq: int, kind: str, prev_hash: bytes, body: dict[str, Any]
) -> tuple[str, bytes]:
    """One entry's line and hash, from the specification."""
    content = ref_json(body).encode("ascii")
    digest = hashlib.sha256(
        b"accord/v1/ledger-entry" + ref_frame(FORMAT_VERSION, seq, kind, prev_hash, content)
    ).digest()
    signature = ref_ed25519_sign(secret, b"accord/v1/ledger-entry-signature" + ref_frame(digest))
    line = ref_json(
        {
            "version": FORMAT_VERSION,
            "seq": seq,
            "kind": kind,
            "prev_hash": prev_hash.hex(),
            "body": body,
            "hash": digest.hex(),
            "signature": signature.hex(),
        }
    )
    return line, digest


def ledger_vectors() -> dict[str, Any]:
    secret = material("ledger/identity", 32)
    public = ref_ed25519_public(secret)
    check(identity.public_from_private(secret) == public, "ledger public key")

    made: list[ledger.Entry] = [
        ledger.open_ledger(LEDGER_ID, secret, {"role": "participant", "participant": "energy"})
    ]
    made.append(ledger.checkpoint(made[-1].head, LEDGER_ID, secret))
    for kind, body in ENTRIES:
        made.append(ledger.append(made[-1].head, kind, body, secret))
        made.append(ledger.checkpoint(made[-1].head, LEDGER_ID, secret))

    rows = []
    prev = bytes(32)
    for entry in made:
        line, digest = ref_entry(secret, entry.seq, entry.kind, prev, dict(entry.body))
        check(entry.to_line() == line, f"ledger entry {entry.seq} line")
        check(entry.hash == digest, f"ledger entry {entry.seq} hash")
        rows.append({"kind": entry.kind, "body": dict(entry.body), "line": line})
        prev = digest
    check(verify_chain([row["line"] for row in rows], public).ok, "the ledger verifies")

    head = ledger.sign_head(made[-1].head, LEDGER_ID, secret)
    head_signature = ref_ed25519_sign(
        secret,
        b"accord/v1/ledger-head" + ref_frame(LEDGER_ID, made[-1].seq + 1, made[-1].hash),
    )
    check(head.signature == head_signature, "signed head signature")
    head_bytes = ref_json(
        {
            "version": FORMAT_VERSION,
            "ledger_id": LEDGER_ID,
            "count": made[-1].seq + 1,
            "head_hash": made[-1].hash.hex(),
            "signature": head_signature.hex(),
        }
    ).encode("ascii")
    check(head.to_bytes() == head_bytes, "signed head bytes")
    return {
        "format": "accord/v1/ledger",
        "version": FORMAT_VERSION,
        "description": "A participant ledger: entry k is canonical JSON of {version, seq, kind, "
        "prev_hash, body, hash, signature}; hash = SHA-256('accord/v1/ledger-entry' || F(version) "
        "|| F(seq) || F(kind) || F(prev_hash) || F(canonical_json(body))); signature = "
        "Ed25519(sk, 'accord/v1/ledger-entry-signature' || F(hash)); F = u32 BE length || bytes, "
        "ints as u64 BE; canonical JSON: sorted keys, no whitespace, ASCII escapes, no floats. "
        "signed_head: canonical JSON of the head after the last entry, signed over "
        "'accord/v1/ledger-head' || F(ledger_id) || F(count) || F(head_hash).",
        "identity_private": secret.hex(),
        "identity_public": public.hex(),
        "ledger_id": LEDGER_ID,
        "rows": rows,
        "signed_head": head_bytes.decode("ascii"),
    }


def main() -> int:
    document = ledger_vectors()
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    (HERE / "ledger.json").write_text(text, encoding="utf-8")
    print("wrote ledger.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
