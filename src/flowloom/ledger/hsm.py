"""Keys in a PKCS#11 token (an HSM): Ed25519 signing keys and an AES-256 master key.

Signing keys are Ed25519 key pairs (CKK_EC_EDWARDS, signed with CKM_EDDSA, which is
pure Ed25519): the private key is generated in the token, sensitive and not
extractable, and never leaves it. A key's label says its role, like the key files'
names: ``<origin>`` for the key in use, ``<origin>+<8 hex key id>`` for every other
(new or rotated out), so a key is found by its note key id either way. The master key
is an AES-256 secret key labelled `master_label` (rotated-out ones
``<master_label>.<id>``), named in the record by its CKA_ID; data keys are encrypted in
the token with CKM_AES_GCM, the context as associated data.

python-pkcs11 is imported only when a token is used.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from flowloom.errors import ConfigError, KeyFileError

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer, Verifier

__all__ = ["Pkcs11MasterKey", "Pkcs11MasterKeys", "Pkcs11SigningKeys", "Token"]

_ED25519_OID = "1.3.101.112"
_NONCE_SIZE = 12

# C_Initialize is once per process and module, and a login holds for every session of the
# process (PKCS#11 §5.4, §6.7): a module loaded twice must be the same handle and a token
# logged into once shares that session. These caches are those rules, not app state.
_LIBRARIES: dict[str, Any] = {}
_SESSIONS: dict[tuple[str, str], tuple[Any, bytes]] = {}
_SESSION_LOCKS: dict[tuple[str, str], threading.RLock] = {}
_LIBRARIES_LOCK = threading.Lock()


class Token:
    """One logged-in session on one token; operations are serialised (one session)."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module = module
        self.label = token_label
        self._pin = pin
        self._session: Any = None
        # One operation at a time per session (C_SignInit..C_Sign): the lock is shared by
        # every Token of the process on this token, as the session is.
        with _LIBRARIES_LOCK:
            self.lock = _SESSION_LOCKS.setdefault((module, token_label), threading.RLock())

    @property
    def where(self) -> str:
        return f"PKCS#11 token {self.label!r} ({self.module})"

    def session(self) -> Any:
        """The open, logged-in session (opened on first use, shared in the process)."""
        with self.lock:
            if self._session is None:
                self._session = self._open()
            return self._session

    def _open(self) -> Any:
        import hashlib
        import hmac

        import pkcs11

        pin_digest = hashlib.sha256(self._pin.encode()).digest()
        with _LIBRARIES_LOCK:
            shared = _SESSIONS.get((self.module, self.label))
            if shared is not None:
                if not hmac.compare_digest(shared[1], pin_digest):
                    raise ConfigError(
                        f"the PIN given for {self.where} is not the one this process logged in with"
                    )
                return shared[0]
            try:
                lib = _LIBRARIES.get(self.module)
                if lib is None:
                    lib = _LIBRARIES[self.module] = pkcs11.lib(self.module)
                token = lib.get_token(token_label=self.label)
                session = token.open(user_pin=self._pin, rw=True)
            except pkcs11.exceptions.NoSuchToken as exc:
                raise ConfigError(
                    f"no PKCS#11 token labelled {self.label!r} in {self.module}",
                    hint="check [keys] pkcs11_token (docs/keys.md)",
                ) from exc
            except pkcs11.exceptions.PinIncorrect as exc:
                raise ConfigError(f"the PIN of {self.where} is wrong") from exc
            except (pkcs11.exceptions.PKCS11Error, OSError) as exc:
                raise ConfigError(
                    f"cannot open {self.where}: {type(exc).__name__} {exc}".rstrip(),
                    hint="check [keys] pkcs11_module and pkcs11_token (docs/keys.md)",
                ) from exc
            _SESSIONS[(self.module, self.label)] = (session, pin_digest)
            return session

    def objects(self, **attrs: Any) -> list[Any]:
        import pkcs11

        with self.lock:
            session = self.session()
            template = {
                pkcs11.Attribute.CLASS
                if k == "object_class"
                else getattr(pkcs11.Attribute, k.upper()): v
                for k, v in attrs.items()
            }
            return list(session.get_objects(template))


class _TokenEd25519:
    """An Ed25519 private key in a token, as `flowloom.ledger.note.ExternalKey`."""

    def __init__(self, token: Token, private: Any, public_key: bytes) -> None:
        self._token = token
        self._private = private
        self.public_key = public_key
        self.where = token.where

    def sign(self, message: bytes) -> bytes:
        import pkcs11

        with self._token.lock:
            try:
                return bytes(self._private.sign(message, mechanism=pkcs11.Mechanism.EDDSA))
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyFileError(f"{self.where} refused to sign: {type(exc).__name__}") from exc


def _ec_point(der: bytes) -> bytes:
    """The raw public key from CKA_EC_POINT (a DER OCTET STRING, or raw on some tokens)."""
    if len(der) == 34 and der[:2] == b"\x04\x20":
        return der[2:]
    return der


class Pkcs11SigningKeys:
    """Log signing keys held in a PKCS#11 token (`flowloom.ledger.keyprovider.SigningKeys`)."""

    provider = "pkcs11"

    def __init__(self, token: Token) -> None:
        self.token = token

    @property
    def location(self) -> str:
        return self.token.where

    def expected(self, name: str, key_id: bytes) -> str:
        return f"a key labelled {name!r} or {name}+{key_id.hex()!r}"

    def _signer(self, name: str, public: Any) -> Signer | None:
        import pkcs11

        from flowloom.ledger.note import Signer

        point = _ec_point(bytes(public[pkcs11.Attribute.EC_POINT]))
        ident = bytes(public[pkcs11.Attribute.ID])
        private = self.token.objects(
            object_class=pkcs11.ObjectClass.PRIVATE_KEY,
            key_type=pkcs11.KeyType.EC_EDWARDS,
            id=ident,
        )
        if len(private) != 1:
            return None
        return Signer(name, _TokenEd25519(self.token, private[0], point))

    def _with_label(self, label: str, name: str) -> list[Signer]:
        import pkcs11

        found: list[Signer] = []
        for public in self.token.objects(
            object_class=pkcs11.ObjectClass.PUBLIC_KEY,
            key_type=pkcs11.KeyType.EC_EDWARDS,
            label=label,
        ):
            signer = self._signer(name, public)
            if signer is not None:
                found.append(signer)
        return found

    def has_signer(self, origin: str) -> bool:
        return self.active(origin) is not None

    def active(self, origin: str) -> Signer | None:
        found = self._with_label(origin, origin)
        if len(found) > 1:
            raise KeyFileError(
                f"{self.location} holds {len(found)} keys labelled {origin!r}",
                hint="relabel all but the log's key (docs/keys.md)",
            )
        return found[0] if found else None

    def signer(self, origin: str) -> tuple[Signer, bool]:
        with self.token.lock:
            current = self.active(origin)
            if current is not None:
                return current, False
            signer = self.generate(origin)
            self.activate(signer)
            return signer, True

    def find(self, verifier: Verifier) -> Signer | None:
        signer = self.find_id(verifier.name, verifier.key_id)
        return signer if signer is not None and signer.verifier() == verifier else None

    def find_id(self, name: str, key_id: bytes) -> Signer | None:
        for label in (name, f"{name}+{key_id.hex()}"):
            for signer in self._with_label(label, name):
                if signer.key_id == key_id:
                    return signer
        return None

    def generate(self, origin: str) -> Signer:
        """A new key pair generated in the token, labelled by its key id."""
        import pkcs11
        from pkcs11.util.ec import encode_named_curve_parameters

        from flowloom.ledger.note import Signer, key_id

        ident = os.urandom(16)
        with self.token.lock:
            session = self.token.session()
            try:
                public, private = session.generate_keypair(
                    pkcs11.KeyType.EC_EDWARDS,
                    0,
                    mechanism=pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    store=True,
                    id=ident,
                    label=f"{origin}+pending",
                    public_template={
                        pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)
                    },
                    private_template={
                        pkcs11.Attribute.SENSITIVE: True,
                        pkcs11.Attribute.EXTRACTABLE: False,
                    },
                )
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyFileError(
                    f"{self.location} cannot generate an Ed25519 key: {type(exc).__name__}",
                    hint="the token must support CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA",
                ) from exc
            point = _ec_point(bytes(public[pkcs11.Attribute.EC_POINT]))
            label = f"{origin}+{key_id(origin, point).hex()}"
            public[pkcs11.Attribute.LABEL] = label
            private[pkcs11.Attribute.LABEL] = label
        return Signer(origin, _TokenEd25519(self.token, private, point))

    def archive(self, signer: Signer) -> None:
        """Nothing to copy: every key in the token is found by its key id already."""

    def activate(self, signer: Signer) -> None:
        """Label `signer` as the key in use for its log, and the previous one by its id."""
        with self.token.lock:
            previous = self.active(signer.name)
            if previous is not None and previous.key_id != signer.key_id:
                self._relabel(previous, f"{signer.name}+{previous.key_id.hex()}")
            if previous is None or previous.key_id != signer.key_id:
                self._relabel(signer, signer.name)

    def _relabel(self, signer: Signer, label: str) -> None:
        import pkcs11

        for old_label in (signer.name, f"{signer.name}+{signer.key_id.hex()}"):
            for public in self.token.objects(
                object_class=pkcs11.ObjectClass.PUBLIC_KEY,
                key_type=pkcs11.KeyType.EC_EDWARDS,
                label=old_label,
            ):
                point = _ec_point(bytes(public[pkcs11.Attribute.EC_POINT]))
                from flowloom.ledger.note import key_id

                if key_id(signer.name, point) != signer.key_id:
                    continue
                ident = bytes(public[pkcs11.Attribute.ID])
                for private in self.token.objects(
                    object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=ident
                ):
                    private[pkcs11.Attribute.LABEL] = label
                public[pkcs11.Attribute.LABEL] = label
                return


class Pkcs11MasterKey:
    """An AES-256 key in a token: data keys are encrypted inside it (CKM_AES_GCM)."""

    def __init__(self, token: Token, secret: Any, ident: bytes) -> None:
        self._token = token
        self._secret = secret
        self.ref = "pkcs11:" + ident.hex()

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        import pkcs11
        from pkcs11.mechanisms import GCMParams

        nonce = os.urandom(_NONCE_SIZE)
        with self._token.lock:
            sealed = self._secret.encrypt(
                plaintext,
                mechanism=pkcs11.Mechanism.AES_GCM,
                mechanism_param=GCMParams(nonce, context, 128),
            )
        return nonce + bytes(sealed)

    def decrypt(self, ciphertext: bytes, context: bytes) -> bytes:
        import pkcs11
        from pkcs11.mechanisms import GCMParams

        try:
            with self._token.lock:
                return bytes(
                    self._secret.decrypt(
                        ciphertext[_NONCE_SIZE:],
                        mechanism=pkcs11.Mechanism.AES_GCM,
                        mechanism_param=GCMParams(ciphertext[:_NONCE_SIZE], context, 128),
                    )
                )
        except pkcs11.exceptions.PKCS11Error as exc:
            raise KeyFileError(
                f"master key {self.ref} cannot decrypt this data key: wrong key or damaged row"
            ) from exc


class Pkcs11MasterKeys:
    """The master key in a PKCS#11 token (`flowloom.ledger.keyprovider.MasterKeys`)."""

    provider = "pkcs11"

    def __init__(self, token: Token, label: str) -> None:
        self.token = token
        self.label = label

    @property
    def location(self) -> str:
        return self.token.where

    def _secrets(self, **attrs: Any) -> list[Pkcs11MasterKey]:
        import pkcs11

        return [
            Pkcs11MasterKey(self.token, obj, bytes(obj[pkcs11.Attribute.ID]))
            for obj in self.token.objects(
                object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES, **attrs
            )
        ]

    def active(self, *, create: bool) -> Pkcs11MasterKey:
        from flowloom.errors import KeyMissingError

        with self.token.lock:
            found = self._secrets(label=self.label)
            if len(found) > 1:
                raise KeyFileError(
                    f"{self.location} holds {len(found)} keys labelled {self.label!r}"
                )
            if found:
                return found[0]
            if not create:
                raise KeyMissingError(
                    f"no master key labelled {self.label!r} in {self.location}",
                    hint="check [keys] pkcs11_master_label, or write once to create it",
                )
            return self._generate(self.label)

    def _generate(self, label: str) -> Pkcs11MasterKey:
        import pkcs11

        ident = os.urandom(8)
        try:
            secret = self.token.session().generate_key(
                pkcs11.KeyType.AES,
                256,
                store=True,
                id=ident,
                label=label,
                template={
                    pkcs11.Attribute.SENSITIVE: True,
                    pkcs11.Attribute.EXTRACTABLE: False,
                    pkcs11.Attribute.ENCRYPT: True,
                    pkcs11.Attribute.DECRYPT: True,
                },
            )
        except pkcs11.exceptions.PKCS11Error as exc:
            raise KeyFileError(
                f"{self.location} cannot generate an AES-256 key: {type(exc).__name__}"
            ) from exc
        return Pkcs11MasterKey(self.token, secret, ident)

    def find(self, ref: str) -> Pkcs11MasterKey | None:
        if not ref.startswith("pkcs11:"):
            return None
        try:
            ident = bytes.fromhex(ref[len("pkcs11:") :])
        except ValueError:
            return None
        found = self._secrets(id=ident)
        return found[0] if len(found) == 1 else None

    def legacy(self) -> list[Pkcs11MasterKey]:
        return []

    def rotate(self, to: str | None) -> tuple[Pkcs11MasterKey | None, Pkcs11MasterKey]:
        import pkcs11

        if to is not None:
            raise KeyFileError(
                "a token's master key is rotated to a new key it generates",
                hint="leave out --to",
            )
        with self.token.lock:
            current = self._secrets(label=self.label)
            old = current[0] if current else None
            new = self._generate(f"{self.label}.pending")
            if old is not None:
                old._secret[pkcs11.Attribute.LABEL] = f"{self.label}.{old.ref[7:]}"
            new._secret[pkcs11.Attribute.LABEL] = self.label
        return old, new
