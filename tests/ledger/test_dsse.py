"""DSSE envelopes and in-toto statements: the spec's vector, tampering, and another verifier.

securesystemslib (the Secure Systems Lab's reference implementation of DSSE) reads the
envelopes FlowLoom writes and verifies their Ed25519 signatures with the log's public
key: the format is the ecosystem's, not a look-alike.
"""

from __future__ import annotations

import json

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from flowloom.errors import InputError, VerificationError
from flowloom.ledger.dsse import INTOTO_PAYLOAD_TYPE, STATEMENT_TYPE, Envelope, pae, statement
from flowloom.ledger.note import Signer


def test_pae_matches_the_dsse_specification() -> None:
    # The protocol's own example (secure-systems-lab/dsse, protocol.md).
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def _signed(signer: Signer) -> Envelope:
    document = statement([("report.pdf", "ab" * 32)], "urn:example:test", {"x": "ü"})
    return Envelope.of_statement(document).signed(signer)


def test_round_trip_and_tampering() -> None:
    signer = Signer.generate("flowloom.example.com/acme")
    envelope = _signed(signer)
    parsed = Envelope.parse(envelope.to_line())
    assert parsed == envelope
    assert parsed.verified_by([signer.verifier()]) == signer.verifier()
    document = parsed.statement()
    assert document["_type"] == STATEMENT_TYPE and document["predicate"] == {"x": "ü"}
    other = Signer.generate("flowloom.example.com/acme")
    assert parsed.verified_by([other.verifier()]) is None
    changed = Envelope(parsed.payload.replace(b"report.pdf", b"report.PDF"), parsed.payload_type,
                       parsed.signatures)  # fmt: skip
    assert changed.verified_by([signer.verifier()]) is None
    retyped = Envelope(parsed.payload, "application/json", parsed.signatures)
    assert retyped.verified_by([signer.verifier()]) is None
    with pytest.raises(VerificationError):
        retyped.statement()
    with pytest.raises(InputError):
        Envelope.parse(b"{}")
    with pytest.raises(InputError):
        statement([], "urn:example:test", {})


def test_securesystemslib_verifies_flowloom_envelopes() -> None:
    signer = Signer.generate("flowloom.example.com/acme")
    envelope = _signed(signer)
    keyid = f"{signer.name}+{signer.key_id.hex()}"
    key = SSlibKey(keyid, "ed25519", "ed25519", {"public": signer.verifier().public_key.hex()})
    theirs = SslibEnvelope.from_dict(json.loads(envelope.to_line()))
    assert theirs.payload_type == INTOTO_PAYLOAD_TYPE
    assert theirs.pae() == envelope.pae()
    accepted = theirs.verify([key], 1)
    assert keyid in accepted
    theirs.payload = theirs.payload + b" "
    with pytest.raises(Exception, match=r"(?i)verif|threshold"):
        theirs.verify([key], 1)
