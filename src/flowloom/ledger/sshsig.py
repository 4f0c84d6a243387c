"""SSH signatures (OpenSSH SSHSIG): a person's own git signing key signs an approval.

A local approval must prove who gave it without trusting the OS user name. Developers
already sign commits with SSH keys (`git config gpg.format ssh`), so an approval is an
SSHSIG made by `ssh-keygen -Y sign` with that key, and the signer is whoever the
project's allowed-signers file (the format of git's `gpg.ssh.allowedSignersFile`) lists
for the key. This module verifies such signatures in Python, the way
`ssh-keygen -Y verify` does, so readers need no OpenSSH; signing still runs
`ssh-keygen`, which reaches private keys and ssh-agent without FlowLoom touching them.

Formats: OpenSSH PROTOCOL.sshsig (armored blob, signed data) and the ALLOWED SIGNERS
section of ssh-keygen(1). Keys: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa
(signatures rsa-sha2-256/512). Security keys (sk-*) and certificates are refused.

Differences from ssh-keygen, on purpose: principals are compared in canonical form
(`flowloom.ledger.identity`), so `A@X.org` in the file is `a@x.org`; a signature whose
reserved field is not empty is refused (it would be unsigned data); the whole
allowed-signers file must parse, not only the lines ssh-keygen happens to read.

Stdlib only at import time: `cryptography` is imported inside the functions that use it
(hooks import the ledger package).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from flowloom.errors import ConfigError, InputError, KeyFileError, SignatureError
from flowloom.ledger.identity import canonical_identity

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

__all__ = [
    "SSHSIG_NAMESPACE",
    "AllowedSigner",
    "AllowedSigners",
    "AllowedSignersError",
    "AmbiguousSignerError",
    "BadSshSignatureError",
    "NamespaceMismatchError",
    "NamespaceNotAllowedError",
    "PrincipalMismatchError",
    "SignerIdentity",
    "SignerKeyNotValidError",
    "SshKeygenError",
    "SshPublicKey",
    "SshSignature",
    "SshSignatureError",
    "SshSignatureFormatError",
    "UnknownSignerKeyError",
    "UnsupportedSshKeyError",
    "sign_with_ssh_keygen",
    "verify_signed",
]

SSHSIG_NAMESPACE: Final = "flowloom"
"""The namespace FlowLoom signs in: a FlowLoom signature can never pass for a git commit
signature (namespace `git`) or a file signature, nor the other way round."""

_BEGIN: Final = "-----BEGIN SSH SIGNATURE-----"
_END: Final = "-----END SSH SIGNATURE-----"
_MAGIC: Final = b"SSHSIG"
_VERSION: Final = 1
_MAX_ARMORED: Final = 64 * 1024  # an RSA-16384 signature armors to under 5 KiB
_MESSAGE_HASHES: Final[Mapping[str, Callable[[bytes], bytes]]] = {
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "sha512": lambda data: hashlib.sha512(data).digest(),
}

_ED25519: Final = "ssh-ed25519"
_RSA: Final = "ssh-rsa"
# key type -> (curve name inside the key blob, curve class, signature hash)
_ECDSA: Final[Mapping[str, tuple[str, str, str]]] = {
    "ecdsa-sha2-nistp256": ("nistp256", "SECP256R1", "SHA256"),
    "ecdsa-sha2-nistp384": ("nistp384", "SECP384R1", "SHA384"),
    "ecdsa-sha2-nistp521": ("nistp521", "SECP521R1", "SHA512"),
}
_ECDSA_POINT_BYTES: Final[Mapping[str, int]] = {
    "nistp256": 65,
    "nistp384": 97,
    "nistp521": 133,
}
_RSA_SIGNATURES: Final[Mapping[str, str]] = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}
_RSA_MIN_BITS: Final = 1024  # as OpenSSH
_RSA_MAX_BITS: Final = 16384
_SUPPORTED_KEY_TYPES: Final = frozenset({_ED25519, _RSA, *_ECDSA})
# Key types OpenSSH knows that FlowLoom cannot verify: an allowed-signers line may name
# them (the file is shared with git), but a signature by one is refused.
_OTHER_KEY_TYPES: Final = frozenset(
    {
        "ssh-dss",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
        "ssh-dss-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    }
)
_KNOWN_KEY_TYPES: Final = _SUPPORTED_KEY_TYPES | _OTHER_KEY_TYPES
_KEYGEN_TIMEOUT_S: Final = 300.0  # long enough to type a passphrase at ssh-keygen's prompt


# -- errors --------------------------------------------------------------------------------


class SshSignatureFormatError(InputError):
    """An SSH signature that is not a well-formed armored SSHSIG."""


class UnsupportedSshKeyError(SshSignatureFormatError):
    """A signature by a key type FlowLoom does not verify (security keys, certificates)."""


class AllowedSignersError(ConfigError):
    """An allowed-signers file that cannot be read or has a malformed line."""


class SshSignatureError(SignatureError):
    """An SSH signature that does not establish who signed: the base of the cases below."""


class NamespaceMismatchError(SshSignatureError):
    """The signature was made for another namespace (another purpose)."""


class BadSshSignatureError(SshSignatureError):
    """The signature does not verify over the message: wrong content or forged."""


class UnknownSignerKeyError(SshSignatureError):
    """The signing key is not in the allowed-signers file."""


class PrincipalMismatchError(SshSignatureError):
    """The signing key is in the allowed-signers file, but for other principals."""


class NamespaceNotAllowedError(SshSignatureError):
    """The allowed-signers file limits the key to namespaces this one is not among."""


class SignerKeyNotValidError(SshSignatureError):
    """The key is outside its valid-after / valid-before window at the given time."""


class AmbiguousSignerError(SshSignatureError):
    """The key stands for several people, or only for a pattern: no single signer."""


class SshKeygenError(ConfigError):
    """`ssh-keygen` is missing, or it could not sign with the configured key."""


# -- SSH wire format -----------------------------------------------------------------------


class _WireError(ValueError):
    """Malformed SSH wire data; callers turn it into their own error."""


class _Reader:
    """Reads RFC 4251 fields from a byte string, strictly (no truncation, no slack)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def raw(self, size: int) -> bytes:
        if size > len(self._data) - self._at:
            raise _WireError("truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.raw(4), "big")

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError:
            raise _WireError("a text field is not UTF-8") from None

    def positive_mpint(self) -> int:
        data = self.string()
        if not data:
            raise _WireError("a number is zero")
        if data[0] & 0x80:
            raise _WireError("a number is negative")
        if data[0] == 0 and (len(data) == 1 or not data[1] & 0x80):
            raise _WireError("a number has a superfluous leading zero")
        return int.from_bytes(data, "big")

    def end(self) -> None:
        if self._at != len(self._data):
            raise _WireError("trailing data")


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# -- public keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SshPublicKey:
    """An SSH public key: its type name and its wire blob (what fingerprints hash)."""

    key_type: str
    blob: bytes

    @classmethod
    def from_blob(cls, blob: bytes) -> SshPublicKey:
        """Parse a key blob strictly; a type FlowLoom cannot verify is refused."""
        try:
            key_type = _Reader(blob).text()
        except _WireError as exc:
            raise SshSignatureFormatError(f"malformed SSH public key: {exc}") from None
        if key_type not in _SUPPORTED_KEY_TYPES:
            raise UnsupportedSshKeyError(_unsupported_message(key_type))
        key = cls(key_type, blob)
        try:
            key._load()
        except _WireError as exc:
            raise SshSignatureFormatError(f"malformed {key_type} public key: {exc}") from None
        return key

    @classmethod
    def from_openssh(cls, text: str) -> SshPublicKey:
        """Parse `TYPE BASE64 [comment]`, the form of a `.pub` file."""
        fields = text.split()
        if len(fields) < 2:
            raise SshSignatureFormatError("an SSH public key is `TYPE BASE64 [comment]`")
        key = cls.from_blob(_b64decode(fields[1], SshSignatureFormatError, "SSH public key"))
        if key.key_type != fields[0]:
            raise SshSignatureFormatError(
                f"the key says {fields[0]} but its data is a {key.key_type} key"
            )
        return key

    @property
    def supported(self) -> bool:
        return self.key_type in _SUPPORTED_KEY_TYPES

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, exactly as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def openssh(self) -> str:
        """`TYPE BASE64`, as in a `.pub` file or an allowed-signers line."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"

    def _load(self) -> object:
        """The `cryptography` key for this blob; raises _WireError when it is invalid."""
        reader = _Reader(self.blob)
        reader.text()  # the type name, already known
        if self.key_type == _ED25519:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            raw = reader.string()
            reader.end()
            if len(raw) != 32:
                raise _WireError("an ed25519 key is 32 bytes")
            return Ed25519PublicKey.from_public_bytes(raw)
        if self.key_type in _ECDSA:
            from cryptography.hazmat.primitives.asymmetric import ec

            curve_name, curve_class, _ = _ECDSA[self.key_type]
            if reader.text() != curve_name:
                raise _WireError(f"the curve is not {curve_name}")
            point = reader.string()
            reader.end()
            if len(point) != _ECDSA_POINT_BYTES[curve_name] or point[0] != 4:
                raise _WireError("the point is not an uncompressed point of the curve")
            curve = getattr(ec, curve_class)()
            try:
                return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
            except ValueError:
                raise _WireError("the point is not on the curve") from None
        if self.key_type == _RSA:
            from cryptography.hazmat.primitives.asymmetric import rsa

            exponent = reader.positive_mpint()
            modulus = reader.positive_mpint()
            reader.end()
            if not _RSA_MIN_BITS <= modulus.bit_length() <= _RSA_MAX_BITS:
                raise _WireError(
                    f"the modulus is {modulus.bit_length()} bits, "
                    f"outside {_RSA_MIN_BITS}..{_RSA_MAX_BITS}"
                )
            try:
                return rsa.RSAPublicNumbers(exponent, modulus).public_key()
            except ValueError as exc:
                raise _WireError(str(exc)) from None
        raise UnsupportedSshKeyError(_unsupported_message(self.key_type))

    def _verify(self, algorithm: str, signature: bytes, data: bytes) -> bool:
        """Whether `signature` (already shape-checked by SshSignature) signs `data`."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        key = self._load()
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                reader = _Reader(signature)
                r, s = reader.positive_mpint(), reader.positive_mpint()
                der = encode_dss_signature(r, s)
                hash_class: type[HashAlgorithm] = getattr(hashes, _ECDSA[self.key_type][2])
                key.verify(der, data, ec.ECDSA(hash_class()))
            elif isinstance(key, rsa.RSAPublicKey):
                size = (key.key_size + 7) // 8
                hash_class = getattr(hashes, _RSA_SIGNATURES[algorithm])
                key.verify(signature.rjust(size, b"\0"), data, padding.PKCS1v15(), hash_class())
            else:  # pragma: no cover - _load returns one of the three
                return False
        except InvalidSignature:
            return False
        return True


def _unsupported_message(key_type: str) -> str:
    if key_type.startswith("sk-"):
        return (
            f"{key_type} (security key) signatures are not supported; "
            "sign with an ed25519, ecdsa or rsa key"
        )
    if "-cert-" in key_type:
        return (
            f"{key_type} certificate signatures are not supported; "
            "sign with the plain key and list it in the allowed-signers file"
        )
    return f"{key_type or 'unnamed'} keys are not supported; use an ed25519, ecdsa or rsa key"


def _b64decode(text: str, error: type[Exception], what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise error(f"{what} is not valid base64") from None


# -- signatures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SshSignature:
    """A parsed SSHSIG: who (the key) signed in which namespace, and the raw signature."""

    public_key: SshPublicKey
    namespace: str
    hash_algorithm: str
    signature_algorithm: str
    signature: bytes

    @classmethod
    def parse(cls, armored: str) -> SshSignature:
        """Parse an armored `-----BEGIN SSH SIGNATURE-----` block, strictly."""
        if not isinstance(armored, str) or len(armored) > _MAX_ARMORED:
            raise SshSignatureFormatError("an SSH signature must be text under 64 KiB")
        if "\r" in armored:
            raise SshSignatureFormatError("an SSH signature's lines must end in LF, not CRLF")
        lines = armored.rstrip().split("\n")
        if len(lines) < 3 or lines[0] != _BEGIN:
            raise SshSignatureFormatError(
                f"an SSH signature must start with the line {_BEGIN}",
                hint="pass the whole output of ssh-keygen -Y sign",
            )
        if lines[-1] != _END:
            raise SshSignatureFormatError(f"an SSH signature must end with the line {_END}")
        body = lines[1:-1]
        if any(not line or not _BASE64_LINE.fullmatch(line) for line in body):
            raise SshSignatureFormatError("an SSH signature's body must be base64 lines only")
        blob = _b64decode("".join(body), SshSignatureFormatError, "the SSH signature's body")
        try:
            return cls._from_blob(blob)
        except _WireError as exc:
            raise SshSignatureFormatError(f"malformed SSH signature: {exc}") from None

    @classmethod
    def _from_blob(cls, blob: bytes) -> SshSignature:
        reader = _Reader(blob)
        if reader.raw(len(_MAGIC)) != _MAGIC:
            raise _WireError("it does not start with SSHSIG")
        version = reader.uint32()
        if version != _VERSION:
            raise _WireError(f"version {version} is not the supported version {_VERSION}")
        public_key = SshPublicKey.from_blob(reader.string())
        namespace = reader.text()
        reserved = reader.string()
        hash_algorithm = reader.text()
        inner = reader.string()
        reader.end()
        if not namespace:
            raise _WireError("the namespace is empty")
        if reserved:
            raise _WireError("the reserved field is not empty")
        if hash_algorithm not in _MESSAGE_HASHES:
            raise _WireError(f"hash algorithm {hash_algorithm!r} is not sha256 or sha512")
        sig_reader = _Reader(inner)
        algorithm = sig_reader.text()
        signature = sig_reader.string()
        sig_reader.end()
        _check_signature_shape(public_key, algorithm, signature)
        return cls(public_key, namespace, hash_algorithm, algorithm, signature)

    def signed_data(self, message: bytes, namespace: str) -> bytes:
        """The bytes the key signs for `message` (PROTOCOL.sshsig, section 3)."""
        return b"".join(
            [
                _MAGIC,
                _ssh_string(namespace.encode("utf-8")),
                _ssh_string(b""),
                _ssh_string(self.hash_algorithm.encode("ascii")),
                _ssh_string(_MESSAGE_HASHES[self.hash_algorithm](message)),
            ]
        )

    def verify(self, message: bytes, namespace: str) -> None:
        """Check the signature over `message` in `namespace` (no identity: see
        `verify_signed`); raises NamespaceMismatchError or BadSshSignatureError."""
        if not namespace:
            raise ValueError("the expected namespace must not be empty")
        if self.namespace != namespace:
            raise NamespaceMismatchError(
                f"the SSH signature is for namespace {self.namespace!r}, not {namespace!r}"
            )
        data = self.signed_data(message, namespace)
        try:
            good = self.public_key._verify(self.signature_algorithm, self.signature, data)
        except _WireError as exc:  # pragma: no cover - the shape was checked at parse
            raise SshSignatureFormatError(f"malformed SSH signature: {exc}") from None
        if not good:
            raise BadSshSignatureError(
                f"the SSH signature by key {self.public_key.fingerprint} does not verify "
                "over this content",
                hint="the content changed after signing, or the signature is forged",
            )


_BASE64_LINE: Final = re.compile(r"[A-Za-z0-9+/=]+")


def _check_signature_shape(key: SshPublicKey, algorithm: str, signature: bytes) -> None:
    """Refuse a signature whose algorithm or size cannot belong to the key."""
    if key.key_type == _ED25519:
        if algorithm != _ED25519 or len(signature) != 64:
            raise _WireError("not an ed25519 signature")
    elif key.key_type in _ECDSA:
        if algorithm != key.key_type:
            raise _WireError(f"a {algorithm} signature by a {key.key_type} key")
        reader = _Reader(signature)
        reader.positive_mpint()
        reader.positive_mpint()
        reader.end()
    elif key.key_type == _RSA:
        if algorithm not in _RSA_SIGNATURES:
            raise _WireError(f"RSA signature algorithm {algorithm!r} is not rsa-sha2-256/512")
        reader = _Reader(key.blob)
        reader.text()
        reader.positive_mpint()
        if len(signature) > (reader.positive_mpint().bit_length() + 7) // 8:
            raise _WireError("the RSA signature is longer than the modulus")
    else:  # pragma: no cover - from_blob admits only supported types
        raise _WireError(f"unsupported key type {key.key_type}")


# -- allowed signers -----------------------------------------------------------------------


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an allowed-signers file."""

    principals: tuple[str, ...]  # patterns, as written
    key: SshPublicKey
    namespaces: tuple[str, ...] | None  # patterns; None = any namespace
    valid_after: datetime | None
    valid_before: datetime | None
    cert_authority: bool
    comment: str
    line: int

    def matches_principal(self, principal: str) -> bool:
        """Whether `principal` matches the line's principal patterns, in canonical form."""
        wanted = canonical_identity(principal)
        if not wanted:
            return False
        patterns = [_canonical_pattern(p) for p in self.principals]
        return _match_list(wanted, patterns)

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or _match_list(namespace, self.namespaces)

    def valid_at(self, at: datetime) -> bool:
        """Whether `at` lies in the validity window (both ends included, whole seconds,
        as ssh-keygen compares)."""
        now = math.floor(_aware(at).timestamp())
        if self.valid_after is not None and now < int(self.valid_after.timestamp()):
            return False
        return self.valid_before is None or now <= int(self.valid_before.timestamp())

    @property
    def identities(self) -> tuple[str, ...]:
        """The canonical principals the line names literally (no wildcard, no negation)."""
        out: list[str] = []
        for pattern in self.principals:
            if pattern.startswith("!") or "*" in pattern or "?" in pattern:
                continue
            ident = canonical_identity(pattern)
            if ident not in out:
                out.append(ident)
        return tuple(out)


class AllowedSigners:
    """An allowed-signers file: which keys may sign for which principals.

    Read it from the base of the range being checked (never from the working tree the
    signer controls) and pass its text to `parse`.
    """

    def __init__(
        self, entries: Sequence[AllowedSigner], *, source: str = "allowed signers"
    ) -> None:
        self.entries = tuple(entries)
        self.source = source

    @classmethod
    def parse(cls, text: str, *, source: str = "allowed signers") -> AllowedSigners:
        """Parse the whole file; any malformed line is an AllowedSignersError naming it."""
        entries = []
        for number, line in enumerate(text.split("\n"), start=1):
            try:
                entry = _parse_line(line, number)
            except _LineError as exc:
                raise AllowedSignersError(
                    f"{source}:{number}: {exc}",
                    hint="each line is: principals [options] keytype base64-key [comment]",
                ) from None
            if entry is not None:
                entries.append(entry)
        return cls(entries, source=source)

    @classmethod
    def read(cls, path: Path) -> AllowedSigners:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise AllowedSignersError(f"allowed-signers file {path} does not exist") from None
        except OSError as exc:
            raise AllowedSignersError(
                f"allowed-signers file {path} cannot be read: {exc.strerror}"
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AllowedSignersError(f"allowed-signers file {path} is not UTF-8") from None
        return cls.parse(text, source=str(path))

    def for_key(self, key: SshPublicKey) -> tuple[AllowedSigner, ...]:
        """The lines that list exactly this key (cert-authority lines never do)."""
        return tuple(e for e in self.entries if not e.cert_authority and e.key.blob == key.blob)

    def principals_for(self, key: SshPublicKey, namespace: str, at: datetime) -> tuple[str, ...]:
        """The canonical principals `key` may sign for in `namespace` at time `at`."""
        out: list[str] = []
        for entry in self.for_key(key):
            if entry.allows_namespace(namespace) and entry.valid_at(at):
                out.extend(i for i in entry.identities if i not in out)
        return tuple(out)

    def check(
        self,
        key: SshPublicKey,
        namespace: str,
        at: datetime,
        *,
        principal: str | None = None,
    ) -> tuple[AllowedSigner, ...]:
        """The lines that allow `key` (for `principal`, when given) in `namespace` at `at`.

        Raises the error of the line that came closest: UnknownSignerKeyError,
        PrincipalMismatchError, NamespaceNotAllowedError or SignerKeyNotValidError.
        """
        listed = self.for_key(key)
        fp = key.fingerprint
        if not listed:
            raise UnknownSignerKeyError(
                f"key {fp} is not in {self.source}",
                hint="add the signer's public key to the allowed-signers file "
                "through an approved commit",
            )
        named = [e for e in listed if principal is None or e.matches_principal(principal)]
        if not named:
            allowed = ", ".join(p for e in listed for p in e.principals)
            raise PrincipalMismatchError(f"key {fp} is allowed for {allowed}, not {principal}")
        in_namespace = [e for e in named if e.allows_namespace(namespace)]
        if not in_namespace:
            lines = ", ".join(str(e.line) for e in named)
            raise NamespaceNotAllowedError(
                f"key {fp} is not allowed to sign in namespace {namespace!r} "
                f"({self.source} line {lines})"
            )
        valid = tuple(e for e in in_namespace if e.valid_at(at))
        if not valid:
            raise SignerKeyNotValidError(
                f"key {fp} is not valid at {_aware(at).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}: "
                + "; ".join(_window(e) for e in in_namespace)
            )
        return valid


def _window(entry: AllowedSigner) -> str:
    parts = [f"{entry.line}:"]
    if entry.valid_after is not None:
        parts.append(f"valid-after {entry.valid_after.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}")
    if entry.valid_before is not None:
        parts.append(f"valid-before {entry.valid_before.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}")
    return "line " + " ".join(parts)


class _LineError(ValueError):
    pass


_OPTION_NAMES: Final = ("cert-authority", "namespaces", "valid-after", "valid-before")


def _parse_line(line: str, number: int) -> AllowedSigner | None:
    text = line.strip(" \t\r")
    if not text or text.startswith("#"):
        return None
    principals_field, rest = _take_principals(text)
    principals = tuple(principals_field.split(","))
    if any(not p or not canonical_identity(p.removeprefix("!")) for p in principals):
        raise _LineError(f"empty principal in {principals_field!r}")
    first, _, after = _split_word(rest)
    options_text = ""
    if first not in _KNOWN_KEY_TYPES:
        options_text, rest = _take_options(rest)
        _parse_options(options_text)  # an unknown option is the clearer complaint
        first, _, after = _split_word(rest.lstrip(" \t"))
        if not first:
            raise _LineError("missing key")
        if first not in _KNOWN_KEY_TYPES:
            raise _LineError(f"unknown key type {first!r}")
    key_type = first
    encoded, _, comment = _split_word(after.lstrip(" \t"))
    if not encoded:
        raise _LineError(f"missing the base64 key after {key_type}")
    key = _line_key(key_type, encoded)
    options = _parse_options(options_text)
    return AllowedSigner(
        principals=principals,
        key=key,
        namespaces=options.namespaces,
        valid_after=options.valid_after,
        valid_before=options.valid_before,
        cert_authority=options.cert_authority,
        comment=comment.strip(" \t"),
        line=number,
    )


def _line_key(key_type: str, encoded: str) -> SshPublicKey:
    blob = _b64decode(encoded, _LineError, "the key")
    if key_type in _SUPPORTED_KEY_TYPES:
        try:
            key = SshPublicKey.from_blob(blob)
        except SshSignatureFormatError as exc:
            raise _LineError(exc.message) from None
    else:
        # A type FlowLoom does not verify: keep it (the file is shared with git) after
        # checking the blob names the same type, as ssh-keygen does.
        try:
            key = SshPublicKey(_Reader(blob).text(), blob)
        except _WireError as exc:
            raise _LineError(f"malformed key: {exc}") from None
    if key.key_type != key_type:
        raise _LineError(f"the line says {key_type} but the key is a {key.key_type} key")
    return key


def _split_word(text: str) -> tuple[str, str, str]:
    match = re.match(r"([^ \t]*)([ \t]*)(.*)", text, re.DOTALL)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2), match.group(3)


def _take_principals(text: str) -> tuple[str, str]:
    """The principals field (quoted or not) and what follows it."""
    if text.startswith('"'):
        end = text.find('"', 1)
        if end < 0:
            raise _LineError("unterminated quote in the principals")
        field, rest = text[1:end], text[end + 1 :]
        if rest and rest[0] not in " \t":
            raise _LineError("no space after the quoted principals")
    else:
        field, _, rest = _split_word(text)
    rest = rest.lstrip(" \t")
    if not rest:
        raise _LineError("missing key")
    return field, rest


def _take_options(text: str) -> tuple[str, str]:
    """The options field (up to the first blank outside quotes) and the rest."""
    quoted = False
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif char in " \t" and not quoted:
            return text[:index], text[index:]
    if quoted:
        raise _LineError("unterminated quote in the options")
    raise _LineError("missing key after the options")


@dataclass
class _Options:
    cert_authority: bool = False
    namespaces: tuple[str, ...] | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None


def _parse_options(text: str) -> _Options:
    options = _Options()
    seen: set[str] = set()
    at = 0
    while at < len(text):
        name_match = re.match(r"[A-Za-z-]+", text[at:])
        name = name_match.group(0).lower() if name_match else ""
        if name not in _OPTION_NAMES:
            token = re.split(r"[=,]", text[at:], maxsplit=1)[0]
            raise _LineError(f"unknown option or key type {token!r}")
        if name in seen:
            raise _LineError(f'more than one "{name}" option')
        seen.add(name)
        at += len(name)
        if name == "cert-authority":
            options.cert_authority = True
        else:
            if text[at : at + 2] != '="':
                raise _LineError(f'{name} needs a quoted value: {name}="..."')
            value, at = _dequote(text, at + 2)
            if name == "namespaces":
                options.namespaces = tuple(value.split(","))
                if any(not n for n in options.namespaces):
                    raise _LineError(f'empty namespace in namespaces="{value}"')
            elif name == "valid-after":
                options.valid_after = _parse_time(value, name)
            else:
                options.valid_before = _parse_time(value, name)
        if at == len(text):
            break
        if text[at] != ",":
            raise _LineError(f"unexpected {text[at]!r} after option {name} in {text!r}")
        at += 1
        if at == len(text):
            raise _LineError("the options end with a comma")
    if (
        options.valid_after is not None
        and options.valid_before is not None
        and options.valid_before <= options.valid_after
    ):
        raise _LineError("valid-before is not after valid-after")
    return options


def _dequote(text: str, at: int) -> tuple[str, int]:
    """The value from `at` to the closing quote (`\\"` escapes a quote) and the index after it."""
    out: list[str] = []
    while at < len(text):
        char = text[at]
        if char == "\\" and text[at + 1 : at + 2] == '"':
            out.append('"')
            at += 2
        elif char == '"':
            return "".join(out), at + 1
        else:
            out.append(char)
            at += 1
    raise _LineError("unterminated quote in the options")


_TIME_FORMATS: Final[Mapping[int, str]] = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def _parse_time(value: str, name: str) -> datetime:
    """YYYYMMDD[HHMM[SS]] with a Z or UTC suffix for UTC, else local time (ssh-keygen's rule)."""
    digits, utc = value, False
    if len(digits) > 1 and digits[-1] in "zZ":
        digits, utc = digits[:-1], True
    elif len(digits) > 3 and digits[-3:].upper() == "UTC":
        digits, utc = digits[:-3], True
    fmt = _TIME_FORMATS.get(len(digits))
    if fmt is None or not (digits.isascii() and digits.isdigit()):
        raise _LineError(f'{name}="{value}" is not YYYYMMDD[HHMM[SS]][Z]')
    try:
        naive = datetime.strptime(digits, fmt)
    except ValueError:
        raise _LineError(f'{name}="{value}" is not a valid date') from None
    when = naive.replace(tzinfo=UTC) if utc else naive.astimezone()
    if when.timestamp() <= 0:
        raise _LineError(f'{name}="{value}" is not after 1970')
    return when


def _canonical_pattern(pattern: str) -> str:
    if pattern.startswith("!"):
        return "!" + canonical_identity(pattern[1:])
    return canonical_identity(pattern)


def _match_list(value: str, patterns: Iterable[str]) -> bool:
    """ssh_config PATTERNS: any `!pattern` that matches refuses, else any match accepts."""
    accepted = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _match(value, pattern[1:] if negated else pattern):
            if negated:
                return False
            accepted = True
    return accepted


def _match(value: str, pattern: str) -> bool:
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a verification time must carry a time zone")
    return at


# -- the one call readers make -------------------------------------------------------------


@dataclass(frozen=True)
class SignerIdentity:
    """Who signed, as established by a verified signature and the allowed-signers file."""

    principal: str  # canonical identity (flowloom.ledger.identity)
    principals: tuple[str, ...]  # every canonical identity the key stands for; principal first
    fingerprint: str  # SHA256:..., as ssh-keygen -l prints it
    public_key: str  # "TYPE BASE64"
    namespace: str
    hash_algorithm: str


def verify_signed(
    message: bytes,
    armored: str,
    namespace: str,
    signers: AllowedSigners,
    *,
    principal: str | None = None,
    at: datetime | None = None,
) -> SignerIdentity:
    """Verify `armored` over `message` in `namespace` and say who signed it.

    With `principal`, the key must be allowed for it (as `ssh-keygen -Y verify -I`);
    without, the key must stand for exactly one literal principal of the file (else
    AmbiguousSignerError). `at` (aware; default now) is the time the key's validity
    window is checked at: for a recorded approval, its signing time.
    """
    when = datetime.now(UTC) if at is None else _aware(at)
    signature = SshSignature.parse(armored)
    signature.verify(message, namespace)
    key = signature.public_key
    lines = signers.check(key, namespace, when, principal=principal)
    identities: list[str] = []
    for entry in lines:
        identities.extend(i for i in entry.identities if i not in identities)
    if principal is not None:
        chosen = canonical_identity(principal)
        identities = [chosen, *(i for i in identities if i != chosen)]
    elif len(identities) != 1:
        named = ", ".join(p for e in lines for p in e.principals)
        raise AmbiguousSignerError(
            f"key {key.fingerprint} stands for {named}, not for exactly one person",
            hint="list each person's key on its own line, under their email",
        )
    return SignerIdentity(
        principal=identities[0],
        principals=tuple(identities),
        fingerprint=key.fingerprint,
        public_key=key.openssh(),
        namespace=namespace,
        hash_algorithm=signature.hash_algorithm,
    )


# -- signing with ssh-keygen ---------------------------------------------------------------


def sign_with_ssh_keygen(
    message: bytes,
    key: Path,
    namespace: str,
    *,
    env: Mapping[str, str] | None = None,
    program: str = "ssh-keygen",
    timeout: float = _KEYGEN_TIMEOUT_S,
) -> str:
    """Sign `message` with `ssh-keygen -Y sign` and return the armored signature.

    `key` is a private key file, or a public key file whose private key is in the
    ssh-agent at `SSH_AUTH_SOCK` (as git's user.signingkey). `env` replaces the
    environment ssh-keygen runs in (default: this process's). A passphrase, if any, is
    asked for on the terminal by ssh-keygen itself; FlowLoom never sees it.
    """
    if not namespace:
        raise ValueError("the namespace must not be empty")
    if not key.is_file():
        raise KeyFileError(
            f"SSH signing key {key} does not exist",
            hint="set user.signingkey to your key's path (git config user.signingkey)",
        )
    command = [program, "-Y", "sign", "-n", namespace, "-f", str(key)]
    try:
        result = subprocess.run(
            command,
            input=message,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError:
        raise SshKeygenError(
            f"{program} is not installed or not on PATH",
            hint="install OpenSSH's client tools (Debian: apt-get install openssh-client)",
        ) from None
    except subprocess.TimeoutExpired:
        raise SshKeygenError(f"ssh-keygen did not finish signing within {timeout:g} s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), f"exit {result.returncode}")
        raise SshKeygenError(
            f"ssh-keygen could not sign with {key}: {last}",
            hint="check the key file, or that its private key is loaded in ssh-agent",
        )
    armored = result.stdout.decode("utf-8", "replace")
    try:
        SshSignature.parse(armored)  # refuse anything but a well-formed signature
    except SshSignatureFormatError as exc:
        raise SshKeygenError(f"ssh-keygen printed no usable signature: {exc.message}") from None
    return armored
