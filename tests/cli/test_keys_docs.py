"""docs/keys.md, run as written: every `sh` block goes through bash with the real CLI,
against a SoftHSM2 token the block itself makes and a KMS on loopback (moto)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ledger.keytoken import AWS_ENV, MODULE_PATHS, kms_endpoint, softhsm_token
from tests.support.kms_ed25519 import KmsStandIn, kms_ed25519

__all__ = ["kms_ed25519", "kms_endpoint"]  # fixtures, used by name

DOC = Path(__file__).parents[2] / "docs" / "keys.md"
BLOCKS = re.findall(r"```sh\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)
DEBIAN_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _block(containing: str) -> str:
    found = [b for b in BLOCKS if containing in b]
    assert len(found) == 1, f"one sh block of docs/keys.md with {containing!r}"
    return found[0]


SETUP = _block("softhsm2-util --init-token")
CONFIG = _block("[keys]")
FIRST_USE = _block("flowloom log vkey > log.vkey")
KMS = _block("FLOWLOOM_MASTER_KEY=kms")
KMS_SIGNING = _block("FLOWLOOM_SIGNING_KEYS=kms")
ROTATION = _block("flowloom keys rotate master")
_FIRST_BODY = "import json, sys; print(json.loads(sys.stdin.readline())['event']['body'])"
READ_BODY = (
    "flowloom log body $(flowloom log show --kind agent.prompt --json | "
    f'{sys.executable} -c "{_FIRST_BODY}")\n'
)


def test_every_block_of_the_doc_is_run_by_a_test() -> None:
    assert sorted(BLOCKS) == sorted({SETUP, CONFIG, FIRST_USE, KMS, KMS_SIGNING, ROTATION})


def _shell(home: Path, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with bash -e as a user whose HOME is `home`, `flowloom` on PATH."""
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "flowloom"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m flowloom "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLOOM_", "AWS_"))}
    env.pop("SOFTHSM2_CONF", None)
    env.update(HOME=str(home), PATH=f"{bin_dir}:{env['PATH']}", **extra)
    env.pop("XDG_CONFIG_HOME", None)
    work = home / "work"
    work.mkdir(exist_ok=True)
    module = next((p for p in MODULE_PATHS if Path(p).exists()), DEBIAN_MODULE)
    script = script.replace(DEBIAN_MODULE, module)
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _ok(home: Path, script: str, **extra: str) -> str:
    done = _shell(home, script, **extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_the_hsm_walkthrough_keeps_every_key_in_the_token(tmp_path: Path) -> None:
    softhsm_token(tmp_path / "probe")  # fails under CI, skips elsewhere, without softhsm2
    home = tmp_path / "ann"
    home.mkdir()
    out = _ok(home, SETUP + CONFIG + FIRST_USE)
    assert "signing keys: pkcs11 (PKCS#11 token 'flowloom'" in out
    assert "(held here)" in out and "in use: pkcs11:" in out
    keys_dir = home / ".local" / "share" / "flowloom" / "keys"
    assert not keys_dir.exists() or list(keys_dir.iterdir()) == []  # nothing on disk

    rotated = _ok(home, SETUP.split("softhsm2-util")[0] + ROTATION)
    assert "rotated: flowloom.local/default+" in rotated
    assert "rotated the master key: pkcs11:" in rotated
    assert "re-wrapped 1 subject keys" in rotated
    shown = _ok(
        home,
        SETUP.split("softhsm2-util")[0]
        + "flowloom --project flowloom-instance log show --kind key.rotated --json\n"
        + "flowloom log show --kind key.rotated --json\n",
    )
    records = [json.loads(line)["event"] for line in shown.splitlines()]
    purposes = {r["refs"]["purpose"]: r["refs"] for r in records}
    assert purposes["master key"]["provider"] == "pkcs11"
    assert purposes["master key"]["rewrapped"]["subject_keys"] == 1
    assert purposes["checkpoint signing"]["provider"] == "pkcs11"
    # The body is still readable through the rotated master key.
    body = _ok(
        home,
        SETUP.split("softhsm2-util")[0] + READ_BODY,
    )
    assert body == "why we chose SQLite\n"
    assert not keys_dir.exists() or list(keys_dir.iterdir()) == []


def test_the_kms_walkthrough_moves_file_wrapped_keys_into_kms(
    tmp_path: Path, kms_endpoint: str
) -> None:
    import boto3

    home = tmp_path / "bob"
    home.mkdir()
    aws = {**AWS_ENV, "FLOWLOOM_KMS_ENDPOINT": kms_endpoint}
    client = boto3.client(
        "kms",
        region_name="eu-west-1",
        endpoint_url=kms_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    alias = "alias/flowloom-master"
    if not any(a["AliasName"] == alias for a in client.list_aliases()["Aliases"]):
        key = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")
        client.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
    first_arn = client.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    # A body and a gateway provider key stored under the default master key file,
    # before KMS was chosen.
    _ok(
        home,
        "printf 'kept secret\\n' > s.txt\n"
        "flowloom log append --kind agent.prompt --body-file s.txt --data-subject bob\n"
        "printf 'sk-ant-upstream\\n' | flowloom gateway providers set-key anthropic\n",
    )
    master_file = home / ".local" / "share" / "flowloom" / "keys" / "master.key"
    assert master_file.exists()

    out = _ok(home, KMS, **aws)
    assert f"master key: kms (AWS KMS ({alias}))" in out
    assert "re-wrapped 1 subject keys and 1 provider keys" in out
    master_file.rename(master_file.with_name("offline.key"))  # kept with the backups
    read = READ_BODY
    exports = "".join(line + "\n" for line in KMS.splitlines() if line.startswith("export"))
    assert _ok(home, exports + read, **aws) == "kept secret\n"  # read through KMS alone
    assert _provider_key(home, kms_endpoint, alias) == "sk-ant-upstream"

    rotate = next(line for line in ROTATION.splitlines() if "rotate master" in line)
    rotated = _ok(home, exports + rotate + "\n", **aws)
    new_arn = client.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    assert new_arn != first_arn
    assert f"kms:{first_arn} -> kms:{new_arn}" in rotated
    assert "re-wrapped 1 subject keys and 1 provider keys" in rotated
    assert _ok(home, exports + read, **aws) == "kept secret\n"
    assert _provider_key(home, kms_endpoint, alias) == "sk-ant-upstream"


def _provider_key(home: Path, endpoint: str, alias: str) -> str | None:
    """The gateway's provider key as the gateway reads it, with the master key in KMS."""
    from flowloom.config import KeySettings
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings
    from flowloom.ledger.providers import open_key_providers

    flowloom_home = home / ".local" / "share" / "flowloom"
    settings = KeySettings(master="kms", kms_key_id=alias, kms_endpoint=endpoint)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        providers = open_key_providers(flowloom_home, settings)
        access = Access(
            str(flowloom_home / "ledger.db"),
            master_key_loader=lambda: providers.envelope(create=False),
            settings=AccessSettings(background=False),
        )
        try:
            return access.provider_key("anthropic")
        finally:
            access.close()


def test_a_wrong_pin_is_a_config_error_naming_the_token(tmp_path: Path) -> None:
    hsm = softhsm_token(tmp_path / "hsm")
    home = tmp_path / "carl"
    home.mkdir()
    done = _shell(
        home,
        "printf 'x\\n' > x.txt\nflowloom log append --kind agent.prompt --body-file x.txt\n",
        SOFTHSM2_CONF=str(hsm.conf),
        FLOWLOOM_SIGNING_KEYS="pkcs11",
        FLOWLOOM_PKCS11_MODULE=hsm.module,
        FLOWLOOM_PKCS11_TOKEN=hsm.token,
        FLOWLOOM_PKCS11_PIN="0000",
    )
    assert done.returncode == 5, done.stderr
    assert "the PIN of PKCS#11 token 'flowloom-tests'" in done.stderr
    assert "Traceback" not in done.stderr
    assert "0000" not in done.stderr


@pytest.mark.parametrize("provider", ["vault", "hsm"])
def test_an_unknown_signing_key_provider_is_refused(tmp_path: Path, provider: str) -> None:
    done = _shell(tmp_path, "flowloom keys status\n", FLOWLOOM_SIGNING_KEYS=provider)
    assert done.returncode == 5
    assert "unknown signing key provider" in done.stderr


def test_the_kms_signing_walkthrough_signs_in_kms_and_verifies_with_the_public_key(
    tmp_path: Path, kms_ed25519: KmsStandIn
) -> None:
    home = tmp_path / "dora"
    home.mkdir()
    out = _ok(home, KMS_SIGNING, **AWS_ENV, FLOWLOOM_KMS_ENDPOINT=kms_ed25519.endpoint)
    assert "signing keys: kms (AWS KMS (eu-west-1))" in out
    assert "(held here)" in out
    assert kms_ed25519.calls.count("CreateKey") == 1
    assert "Sign" in kms_ed25519.calls
    keys_dir = home / ".local" / "share" / "flowloom" / "keys"
    assert not keys_dir.exists() or not list(keys_dir.glob("*.skey"))  # nothing on disk
