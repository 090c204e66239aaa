"""Every certificate `accord provision` writes parses in Go's crypto/x509.

Go (grpcurl, grpc_health_probe, Kubernetes gRPC probes, Envoy's Go control planes) reads
each OID arc into an int and refuses an arc above 63 bits (`asn1: structure error: base
128 integer too large`). The member-keys extension once sat under ``2.25.<UUID>``, a
128-bit arc, so no Go stack could load a kit's certificate. This checks the DER itself,
arc by arc, for every certificate of a provisioned federation: the CA, the
coordinator's server certificate, and each participant's client certificate.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from accord.crypto.credential import MEMBER_KEYS_OID, certified_keys
from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    provision_federation,
)

GO_MAX_ARC = 2**63 - 1


def _oid_arcs(der: bytes) -> list[list[int]]:
    """The arcs of every OBJECT IDENTIFIER anywhere in a DER blob (a minimal DER walker)."""
    found: list[list[int]] = []

    def walk(data: bytes) -> None:
        at = 0
        while at < len(data):
            tag = data[at]
            length = data[at + 1]
            at += 2
            if length & 0x80:
                count = length & 0x7F
                length = int.from_bytes(data[at : at + count], "big")
                at += count
            value = data[at : at + length]
            at += length
            if tag == 0x06:
                found.append(_decode_oid(value))
            elif tag & 0x20:  # constructed: SEQUENCE, SET, [n] EXPLICIT
                walk(value)
            elif tag == 0x04 and value[:1] == b"\x30":  # an extension's OCTET STRING
                with contextlib.suppress(IndexError):  # not DER after all
                    walk(value)

    walk(der)
    return found


def _decode_oid(value: bytes) -> list[int]:
    arcs: list[int] = []
    current = 0
    for byte in value:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(current)
            current = 0
    first = arcs[0]
    return [min(first // 40, 2), first - 40 * min(first // 40, 2), *arcs[1:]]


def test_the_member_keys_oid_fits_go(tmp_path: Path) -> None:
    arcs = [int(arc) for arc in MEMBER_KEYS_OID.dotted_string.split(".")]
    assert max(arcs) <= GO_MAX_ARC, MEMBER_KEYS_OID.dotted_string


def test_every_oid_in_a_provisioned_federation_fits_go(tmp_path: Path) -> None:
    provisioned = provision_federation(
        FederationFile(
            federation=FederationSection(id="city-safety", coordinator="127.0.0.1:50051"),
            participants=(ParticipantSection(name="energy"), ParticipantSection(name="urban")),
        ),
        tmp_path,
    )
    pems = sorted(tmp_path.rglob("*.pem"))
    assert any(p.parent == provisioned.kits["energy"] for p in pems)
    checked = 0
    for pem in pems:
        for certificate in x509.load_pem_x509_certificates(pem.read_bytes()):
            der = certificate.public_bytes(Encoding.DER)
            oids = _oid_arcs(der)
            assert oids, pem
            too_large = [arcs for arcs in oids if max(arcs) > GO_MAX_ARC]
            assert not too_large, f"{pem}: {too_large}"
            checked += 1
    kit_certificate = x509.load_pem_x509_certificate(
        (provisioned.kits["energy"] / "tls.pem").read_bytes()
    )
    # The information is still there, under the new OID.
    assert certified_keys(kit_certificate).participant_id == "energy"
    assert checked >= 4  # CA, coordinator, two members
