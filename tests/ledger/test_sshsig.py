"""SSHSIG verification against the real OpenSSH: keys, signatures and verdicts from
`ssh-keygen`, and our verifier must accept exactly what `ssh-keygen -Y verify` accepts."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.errors import ConfigError, InputError, KeyFileError, SignatureError
from flowloom.ledger.identity import names_match
from flowloom.ledger.sshsig import (
    SSHSIG_NAMESPACE,
    AllowedSigners,
    AllowedSignersError,
    AmbiguousSignerError,
    BadSshSignatureError,
    NamespaceMismatchError,
    NamespaceNotAllowedError,
    PrincipalMismatchError,
    SignerKeyNotValidError,
    SshKeygenError,
    SshPublicKey,
    SshSignature,
    SshSignatureError,
    SshSignatureFormatError,
    UnknownSignerKeyError,
    UnsupportedSshKeyError,
    sign_with_ssh_keygen,
    verify_signed,
)
from flowloom.repo.signing import git_signing_key, sign_with_git_key
from tests.support.sshkeys import (
    SshKey,
    agent_add,
    env_without_agent,
    keygen_find_principals,
    keygen_sign,
    keygen_verify,
    make_key,
    require_ssh_keygen,
    ssh_agent,
)

MESSAGE = b"decision D-0123456789 sha256:9a4e approves tree 4b825dc6\n"
ANN = "ann@example.org"
BOB = "bob@example.org"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    require_ssh_keygen()
    directory = tmp_path_factory.mktemp("keys")
    return {
        "ann": make_key(directory, "ann"),
        "bob": make_key(directory, "bob", "ecdsa", 256),
        "mallory": make_key(directory, "mallory"),
    }


def _allowed(path: Path, text: str) -> tuple[Path, AllowedSigners]:
    path.write_text(text, "utf-8")
    return path, AllowedSigners.read(path)


def _rearmor(blob: bytes) -> str:
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


def _blob(armored: str) -> bytes:
    return base64.b64decode("".join(armored.strip().splitlines()[1:-1]))


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# -- every key type, both hash algorithms ------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "bits", "hashalg"),
    [
        ("ed25519", 0, None),
        ("ed25519", 0, "sha256"),
        ("ecdsa", 256, None),
        ("ecdsa", 256, "sha256"),
        ("ecdsa", 384, None),
        ("ecdsa", 521, "sha256"),
        ("rsa", 2048, None),
        ("rsa", 2048, "sha256"),
    ],
)
def test_keygen_signatures_verify_for_every_supported_key(
    tmp_path: Path, key_type: str, bits: int, hashalg: str | None
) -> None:
    key = make_key(tmp_path, "k", key_type, bits)
    armored = keygen_sign(MESSAGE, key.private, SSHSIG_NAMESPACE, hashalg=hashalg)
    path, signers = _allowed(
        tmp_path / "allowed", f'{ANN} namespaces="flowloom" {key.public_line}\n'
    )

    identity = verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers)

    assert keygen_verify(MESSAGE, armored, SSHSIG_NAMESPACE, path, ANN)
    assert identity.principal == ANN
    assert identity.principals == (ANN,)
    assert identity.fingerprint == key.fingerprint()
    assert identity.public_key == key.public_line
    assert identity.hash_algorithm == (hashalg or "sha512")
    with pytest.raises(BadSshSignatureError):
        verify_signed(MESSAGE + b"x", armored, SSHSIG_NAMESPACE, signers)


# -- the cross-check: same verdict as ssh-keygen -Y verify -------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    allowed: str  # the allowed-signers file; {ann} and {bob} are the public keys
    signer: str = "ann"
    principal: str = ANN
    sign_namespace: str = SSHSIG_NAMESPACE
    tamper: bool = False
    error: type[SshSignatureError] | None = None


CASES = [
    Case("valid", "ann@example.org {ann}\n"),
    Case(
        "flipped message byte", "ann@example.org {ann}\n", tamper=True, error=BadSshSignatureError
    ),
    Case(
        "signed in another namespace",
        "ann@example.org {ann}\n",
        sign_namespace="git",
        error=NamespaceMismatchError,
    ),
    Case("key not in the file", "bob@example.org {bob}\n", error=UnknownSignerKeyError),
    Case(
        "key listed for another principal",
        "ann@example.org {ann}\nbob@example.org {bob}\n",
        signer="ann",
        principal=BOB,
        error=PrincipalMismatchError,
    ),
    Case(
        "mallory claims ann with her own key",
        "ann@example.org {ann}\n",
        signer="mallory",
        error=UnknownSignerKeyError,
    ),
    Case(
        "expired valid-before",
        'ann@example.org valid-before="20200101Z" {ann}\n',
        error=SignerKeyNotValidError,
    ),
    Case(
        "expired valid-before in local time",
        'ann@example.org valid-before="202001011200" {ann}\n',
        error=SignerKeyNotValidError,
    ),
    Case(
        "valid-after in the future",
        'ann@example.org valid-after="20990101Z" {ann}\n',
        error=SignerKeyNotValidError,
    ),
    Case(
        "inside the validity window",
        'ann@example.org valid-after="20200101Z",valid-before="20990101000000Z" {ann}\n',
    ),
    Case("namespace allowed", 'ann@example.org namespaces="git,flowloom" {ann}\n'),
    Case(
        "namespace not allowed",
        'ann@example.org namespaces="git" {ann}\n',
        error=NamespaceNotAllowedError,
    ),
    Case("namespace wildcard", 'ann@example.org namespaces="flow*" {ann}\n'),
    Case(
        "namespace negated",
        'ann@example.org namespaces="*,!flowloom" {ann}\n',
        error=NamespaceNotAllowedError,
    ),
    Case("option keyword case", 'ann@example.org NAMESPACES="flowloom" {ann} a comment\n'),
    Case("principal wildcard", "*@example.org {ann}\n"),
    Case(
        "principal negated",
        "!ann@example.org,*@example.org {ann}\n",
        error=PrincipalMismatchError,
    ),
    Case("principal in a list", "bob@example.org,ann@example.org {ann}\n"),
    Case("quoted principals", '"ann@example.org" {ann}\n'),
    Case(
        "a cert-authority line does not list a plain key",
        "ann@example.org cert-authority {ann}\n",
        error=UnknownSignerKeyError,
    ),
    Case(
        "first line refuses, second allows",
        'ann@example.org namespaces="git" {ann}\nann@example.org namespaces="flowloom" {ann}\n',
    ),
    Case("comments and blank lines", "# people\n\n   # indented\nann@example.org {ann} # ann\n"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdict_matches_ssh_keygen(tmp_path: Path, keys: dict[str, SshKey], case: Case) -> None:
    text = case.allowed.format(ann=keys["ann"].public_line, bob=keys["bob"].public_line)
    path, signers = _allowed(tmp_path / "allowed_signers", text)
    armored = keygen_sign(MESSAGE, keys[case.signer].private, case.sign_namespace)
    message = bytes([MESSAGE[0] ^ 1]) + MESSAGE[1:] if case.tamper else MESSAGE

    openssh_accepts = keygen_verify(message, armored, SSHSIG_NAMESPACE, path, case.principal)

    if case.error is None:
        identity = verify_signed(
            message, armored, SSHSIG_NAMESPACE, signers, principal=case.principal
        )
        assert identity.principal == case.principal
        assert openssh_accepts, "ssh-keygen refused what FlowLoom accepted"
    else:
        with pytest.raises(case.error) as caught:
            verify_signed(message, armored, SSHSIG_NAMESPACE, signers, principal=case.principal)
        assert not openssh_accepts, "ssh-keygen accepted what FlowLoom refused"
        assert isinstance(caught.value, SignatureError)
        assert caught.value.exit_code == 1
        assert "\n" not in caught.value.message


def test_the_author_s_own_key_verifies_as_the_author(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    """Signing with one's own key proves who one is; it never passes for someone else."""
    text = f"{ANN} {keys['ann'].public_line}\n{BOB} {keys['bob'].public_line}\n"
    path, signers = _allowed(tmp_path / "allowed_signers", text)
    author = "Ann Author <Ann@Example.org>"

    by_ann = keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)
    by_bob = keygen_sign(MESSAGE, keys["bob"].private, SSHSIG_NAMESPACE)
    ann = verify_signed(MESSAGE, by_ann, SSHSIG_NAMESPACE, signers)
    bob = verify_signed(MESSAGE, by_bob, SSHSIG_NAMESPACE, signers)

    assert ann.principal == ANN and names_match(ann.principal, author)
    assert bob.principal == BOB and not names_match(bob.principal, author)
    assert keygen_find_principals(by_ann, path) == [ANN]
    assert keygen_find_principals(by_bob, path) == [BOB]
    assert not keygen_verify(MESSAGE, by_ann, SSHSIG_NAMESPACE, path, BOB)
    with pytest.raises(PrincipalMismatchError, match=r"allowed for ann@example\.org, not bob"):
        verify_signed(MESSAGE, by_ann, SSHSIG_NAMESPACE, signers, principal=BOB)


def test_principals_compare_in_canonical_form(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    _, signers = _allowed(tmp_path / "a", f"Ann@Example.ORG. {keys['ann'].public_line}\n")
    armored = keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)

    assert verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers).principal == ANN
    named = verify_signed(
        MESSAGE, armored, SSHSIG_NAMESPACE, signers, principal="mailto:ANN@example.org"
    )
    assert named.principal == ANN


def test_a_key_for_several_people_or_only_a_pattern_names_no_one(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    armored = keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)
    _, shared = _allowed(tmp_path / "shared", f"{ANN},{BOB} {keys['ann'].public_line}\n")
    _, pattern = _allowed(tmp_path / "pattern", f"*@example.org {keys['ann'].public_line}\n")

    with pytest.raises(AmbiguousSignerError, match=r"ann@example\.org, bob@example\.org"):
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, shared)
    with pytest.raises(AmbiguousSignerError):
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, pattern)
    named = verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, shared, principal=BOB)
    assert named.principals == (BOB, ANN)
    assert (
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, pattern, principal=BOB).principal == BOB
    )


def test_validity_is_checked_at_the_given_time_both_ends_included(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    text = (
        f'{ANN} valid-after="20300101Z",valid-before="20300201120000Z" {keys["ann"].public_line}\n'
    )
    _, signers = _allowed(tmp_path / "a", text)
    armored = keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = datetime(2030, 2, 1, 12, tzinfo=UTC)

    for inside in (start, end, end + timedelta(microseconds=999_999)):
        assert (
            verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers, at=inside).principal == ANN
        )
    for outside in (start - timedelta(seconds=1), end + timedelta(seconds=1)):
        with pytest.raises(SignerKeyNotValidError, match="valid-after 2030-01-01T00:00:00Z"):
            verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers, at=outside)
    with pytest.raises(SignerKeyNotValidError):  # default: now (the machine's clock)
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers)
    with pytest.raises(ValueError, match="time zone"):
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers, at=datetime(2030, 1, 2))


def test_principals_for_matches_find_principals(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    text = (
        f"{ANN} {keys['ann'].public_line}\n"
        f'ann@work.example namespaces="flowloom" {keys["ann"].public_line}\n'
        f'ann@old.example valid-before="20200101Z" {keys["ann"].public_line}\n'
        f'ann@git.example namespaces="git" {keys["ann"].public_line}\n'
        f"{BOB} {keys['bob'].public_line}\n"
    )
    path, signers = _allowed(tmp_path / "a", text)
    armored = keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)
    key = SshSignature.parse(armored).public_key
    now = datetime.now(UTC)

    # find-principals names the first line only and ignores namespaces; FlowLoom's
    # lookup returns every principal and honours namespaces and validity.
    assert keygen_find_principals(armored, path) == [ANN]
    assert signers.principals_for(key, SSHSIG_NAMESPACE, now) == (ANN, "ann@work.example")
    assert signers.principals_for(key, "git", now) == (ANN, "ann@git.example")
    unknown = SshPublicKey.from_openssh(keys["mallory"].public.read_text())
    assert signers.principals_for(unknown, SSHSIG_NAMESPACE, now) == ()


# -- malformed signatures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def good(keys: dict[str, SshKey]) -> str:
    return keygen_sign(MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE)


def _with_field(armored: str, index: int, value: bytes) -> str:
    """The signature with its index-th string field (0 = public key) replaced."""
    blob = _blob(armored)
    at, fields = 10, []
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 4], "big")
        fields.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    fields[index] = value
    return _rearmor(blob[:10] + b"".join(_string(f) for f in fields))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda a: "", "must start with the line"),
        (lambda a: " " + a, "must start with the line"),
        (lambda a: a.replace("-----END SSH SIGNATURE-----", ""), "must end with the line"),
        (lambda a: a.replace("\n", "\r\n"), "CRLF"),
        (lambda a: a.replace("\nU1NI", "\n!1NI"), "base64 lines only"),
        (lambda a: a + "trailing words\n", "must end with the line"),
        (lambda a: _rearmor(_blob(a)[:-5]), "truncated"),
        (lambda a: _rearmor(_blob(a) + b"\0"), "trailing data"),
        (lambda a: _rearmor(b"SSHSIH" + _blob(a)[6:]), "does not start with SSHSIG"),
        (lambda a: _rearmor(b"SSHSIG\0\0\0\x02" + _blob(a)[10:]), "version 2"),
        (lambda a: _with_field(a, 1, b""), "namespace is empty"),
        (lambda a: _with_field(a, 2, b"tag"), "reserved field is not empty"),
        (lambda a: _with_field(a, 3, b"sha1"), "'sha1' is not sha256 or sha512"),
        (lambda a: _with_field(a, 4, _string(b"ssh-ed25519") + _string(b"\0" * 63)), "ed25519"),
        (
            lambda a: _with_field(a, 4, _string(b"ecdsa-sha2-nistp256") + _string(b"\0" * 64)),
            "not an ed25519 signature",
        ),
        (lambda a: _with_field(a, 0, _string(b"ssh-ed25519") + _string(b"\1" * 31)), "32 bytes"),
        (lambda a: "x" * 70_000, "under 64 KiB"),
    ],
)
def test_malformed_signatures_are_refused_clearly(good: str, mangle: object, message: str) -> None:
    assert callable(mangle)
    with pytest.raises(SshSignatureFormatError, match=message) as caught:
        SshSignature.parse(mangle(good))
    assert caught.value.exit_code == InputError.exit_code
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("key_type", "message"),
    [
        ("sk-ssh-ed25519@openssh.com", "security key"),
        ("sk-ecdsa-sha2-nistp256@openssh.com", "security key"),
        ("ssh-ed25519-cert-v01@openssh.com", "certificate"),
        ("ssh-dss", "not supported"),
    ],
)
def test_security_keys_and_certificates_are_refused(good: str, key_type: str, message: str) -> None:
    fake_key = _string(key_type.encode()) + _string(b"\1" * 32) + _string(b"ssh:")
    with pytest.raises(UnsupportedSshKeyError, match=message):
        SshSignature.parse(_with_field(good, 0, fake_key))


def test_a_signature_by_another_key_with_the_listed_key_swapped_in_fails(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    """Mallory signs, then replaces her key in the blob with Ann's: the maths says no."""
    _, signers = _allowed(tmp_path / "a", f"{ANN} {keys['ann'].public_line}\n")
    by_mallory = keygen_sign(MESSAGE, keys["mallory"].private, SSHSIG_NAMESPACE)
    ann_blob = SshPublicKey.from_openssh(keys["ann"].public.read_text()).blob
    forged = _with_field(by_mallory, 0, ann_blob)
    with pytest.raises(BadSshSignatureError, match="does not verify"):
        verify_signed(MESSAGE, forged, SSHSIG_NAMESPACE, signers)


# -- the allowed-signers file ------------------------------------------------------------


def test_allowed_signers_lines_parse(keys: dict[str, SshKey]) -> None:
    ann, bob = keys["ann"].public_line, keys["bob"].public_line
    text = (
        "# FlowLoom approvers\n"
        f'ann@example.org namespaces="flowloom" {ann} Ann laptop\n'
        f'"bob@example.org,bob@old.example" Valid-After="20250101",valid-before="20990101Z" {bob}\n'
        f"*@example.org cert-authority {ann}\n"
        "carol@example.org sk-ssh-ed25519@openssh.com "
        + base64.b64encode(_string(b"sk-ssh-ed25519@openssh.com") + _string(b"\1" * 32)).decode()
        + "\n"
    )
    signers = AllowedSigners.parse(text, source=".flowloom/allowed_signers")
    first, second, third, fourth = signers.entries

    assert (first.line, first.principals, first.namespaces, first.comment) == (
        2,
        ("ann@example.org",),
        ("flowloom",),
        "Ann laptop",
    )
    assert second.principals == ("bob@example.org", "bob@old.example")
    assert second.valid_after is not None and second.valid_after.tzinfo is not None
    assert second.valid_before == datetime(2099, 1, 1, tzinfo=UTC)
    assert third.cert_authority and third.principals == ("*@example.org",)
    assert not fourth.key.supported and fourth.identities == ("carol@example.org",)
    assert signers.for_key(first.key) == (first,)  # the cert-authority line does not count


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ann@example.org", "missing key"),
        ('ann@example.org namespaces="flowloom"', "missing key"),
        ("ann@example.org ssh-ed25519", "missing the base64 key"),
        ("ann@example.org ssh-ed25519 AAAA!!!!", "not valid base64"),
        ("ann@example.org ssh-foo AAAA", "unknown option"),
        ('ann@example.org namespaces="flowloom" ssh-foo AAAA', "unknown key type 'ssh-foo'"),
        ("ann@example.org namespaces=flowloom {ann}", "needs a quoted value"),
        ("ann@example.org valid-before=20200101 {ann}", "needs a quoted value"),
        ("ann@example.org verify-required {ann}", "unknown option"),
        ('ann@example.org namespaces="a",namespaces="b" {ann}', 'more than one "namespaces"'),
        ('ann@example.org namespaces="flowloom", {ann}', "end with a comma"),
        ('ann@example.org namespaces="flow {ann}', "unterminated quote"),
        ('ann@example.org namespaces="" {ann}', "empty namespace"),
        ('ann@example.org valid-before="2020" {ann}', "not YYYYMMDD"),
        ('ann@example.org valid-before="20201301Z" {ann}', "not a valid date"),
        ('ann@example.org valid-after="20300101Z",valid-before="20200101Z" {ann}', "not after"),
        ('"ann@example.org {ann}', "unterminated quote"),
        ("ann@example.org ecdsa-sha2-nistp256 {ann_b64}", "the line says ecdsa-sha2-nistp256"),
    ],
)
def test_malformed_allowed_signers_lines_are_refused_with_their_line_number(
    tmp_path: Path, keys: dict[str, SshKey], good: str, line: str, message: str
) -> None:
    ann = keys["ann"].public_line
    text = "# first line\n" + line.format(ann=ann, ann_b64=ann.split()[1]) + "\n"
    with pytest.raises(AllowedSignersError, match=message) as caught:
        AllowedSigners.parse(text, source="allowed_signers")
    assert caught.value.message.startswith("allowed_signers:2: ")
    assert caught.value.exit_code == ConfigError.exit_code
    # ssh-keygen refuses the same line (when it names the signer, as it reads no further).
    path = tmp_path / "allowed_signers"
    path.write_text(text, "utf-8")
    assert not keygen_verify(MESSAGE, good, SSHSIG_NAMESPACE, path, ANN)


def test_an_empty_principal_is_refused_where_ssh_keygen_skips_it(
    tmp_path: Path, keys: dict[str, SshKey], good: str
) -> None:
    """Stricter than ssh-keygen on purpose: `a,,b` is a typo, not a pattern."""
    text = f"ann@example.org,,bob@example.org {keys['ann'].public_line}\n"
    path = tmp_path / "allowed_signers"
    path.write_text(text, "utf-8")
    assert keygen_verify(MESSAGE, good, SSHSIG_NAMESPACE, path, ANN)
    with pytest.raises(AllowedSignersError, match="empty principal"):
        AllowedSigners.parse(text)


def test_an_allowed_signers_file_that_is_missing_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(AllowedSignersError, match="does not exist"):
        AllowedSigners.read(tmp_path / "absent")
    (tmp_path / "latin1").write_bytes(b"j\xf6rg@example.org ssh-ed25519 AAAA\n")
    with pytest.raises(AllowedSignersError, match="not UTF-8"):
        AllowedSigners.read(tmp_path / "latin1")


# -- signing with ssh-keygen -------------------------------------------------------------


def test_sign_with_a_private_key_file(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    path, signers = _allowed(tmp_path / "a", f"{BOB} {keys['bob'].public_line}\n")
    armored = sign_with_ssh_keygen(MESSAGE, keys["bob"].private, SSHSIG_NAMESPACE)

    assert verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers).principal == BOB
    assert keygen_verify(MESSAGE, armored, SSHSIG_NAMESPACE, path, BOB)


def test_sign_through_ssh_agent_with_the_public_key_path(tmp_path: Path) -> None:
    """As git with user.signingkey = a .pub file: the private key lives only in the agent."""
    key = make_key(tmp_path / "keys", "agent_only")
    _, signers = _allowed(tmp_path / "a", f"{ANN} {key.public_line}\n")
    with ssh_agent(tmp_path) as env:
        agent_add(key, env)
        key.private.unlink()
        armored = sign_with_ssh_keygen(MESSAGE, key.public, SSHSIG_NAMESPACE, env=env)
        # Without the agent the same call cannot sign: there is no private key file.
        with pytest.raises(SshKeygenError, match=r"could not sign.*No private key found"):
            sign_with_ssh_keygen(MESSAGE, key.public, SSHSIG_NAMESPACE, env=env_without_agent())
    assert (
        verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers).fingerprint == key.fingerprint()
    )


def test_signing_failures_say_why(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        sign_with_ssh_keygen(MESSAGE, tmp_path / "no_such_key", SSHSIG_NAMESPACE)
    with pytest.raises(SshKeygenError, match="not installed or not on PATH"):
        sign_with_ssh_keygen(
            MESSAGE, keys["ann"].private, SSHSIG_NAMESPACE, program=str(tmp_path / "ssh-keygen")
        )
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    with pytest.raises(
        SshKeygenError, match=r"ssh-keygen could not sign with .*garbage: \S"
    ) as caught:
        sign_with_ssh_keygen(MESSAGE, garbage, SSHSIG_NAMESPACE, env=env_without_agent())
    assert caught.value.exit_code == ConfigError.exit_code


# -- the key git signs with --------------------------------------------------------------


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A git repository with its own HOME and global config (nothing of the machine's)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "SSH_AUTH_SOCK"):
        monkeypatch.delenv(name, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    yield repo


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, timeout=60)


def test_git_signing_key_as_the_docs_set_it_up(git_home: Path) -> None:
    """docs/signatures.md: ssh-keygen -t ed25519, git config gpg.format ssh, user.signingkey."""
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(mode=0o700)
    keygen = [require_ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", ANN]
    subprocess.run([*keygen, "-f", str(home / ".ssh" / "id_ed25519")], check=True, timeout=60)
    with pytest.raises(ConfigError, match="not set up for SSH signing"), git_signing_key(git_home):
        pass
    _git(git_home, "config", "--global", "gpg.format", "ssh")
    with pytest.raises(ConfigError, match=r"no user\.signingkey"), git_signing_key(git_home):
        pass
    _git(git_home, "config", "--global", "user.signingkey", "~/.ssh/id_ed25519.pub")

    with git_signing_key(git_home) as key:
        assert key == home / ".ssh" / "id_ed25519.pub"
    armored = sign_with_git_key(MESSAGE, git_home)
    public = " ".join((home / ".ssh" / "id_ed25519.pub").read_text().split()[:2])
    signers = AllowedSigners.parse(f'{ANN} namespaces="flowloom" {public} Ann\n')
    assert verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers).principal == ANN


def test_git_signing_key_relative_path(git_home: Path, keys: dict[str, SshKey]) -> None:
    _git(git_home, "config", "gpg.format", "ssh")
    _git(git_home, "config", "user.signingkey", "keys/mine")
    (git_home / "sub").mkdir()
    with git_signing_key(git_home / "sub") as key:  # from the work tree's top, as git
        assert key == git_home / "keys" / "mine"
    with pytest.raises(KeyFileError, match="does not exist"):
        sign_with_git_key(MESSAGE, git_home)


@pytest.mark.parametrize("prefix", ["key::", ""])
def test_git_signing_key_literal_uses_the_agent(
    git_home: Path, tmp_path: Path, prefix: str
) -> None:
    key = make_key(tmp_path / "keys", "literal")
    _git(git_home, "config", "gpg.format", "ssh")
    _git(git_home, "config", "user.signingkey", prefix + key.public.read_text().strip())
    _, signers = _allowed(tmp_path / "a", f"{BOB} {key.public_line}\n")

    with git_signing_key(git_home) as path:
        written = path
        assert path.read_text().strip() == key.public.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not written.exists()
    with ssh_agent(tmp_path) as env:
        agent_add(key, env)
        key.private.unlink()
        armored = sign_with_git_key(MESSAGE, git_home, env=env)
    assert verify_signed(MESSAGE, armored, SSHSIG_NAMESPACE, signers).principal == BOB


def test_git_signing_key_literal_that_is_not_a_key(git_home: Path) -> None:
    _git(git_home, "config", "gpg.format", "ssh")
    _git(git_home, "config", "user.signingkey", "key::ssh-ed25519 AAAA")
    with pytest.raises(ConfigError, match="not a usable public key"), git_signing_key(git_home):
        pass
