"""docs/auth.md's SAML section: its key command works and its config example is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from flowloom.auth.saml import SamlServiceProvider, SamlSettings
from flowloom.errors import ConfigError
from tests.support.simplesamlphp import SimpleSamlIdp

DOC = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## SAML single sign-on")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.S)


def test_documented_key_command_makes_a_usable_sp_key(
    tmp_path: Path, saml_idp: SimpleSamlIdp
) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: apt-get install openssl (make saml)")
    [command] = _blocks("sh")
    subprocess.run(command, shell=True, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "sp.key").is_file() and (tmp_path / "sp.crt").is_file()
    [toml_text] = _blocks("toml")
    document = tomllib.loads(toml_text)
    table = dict(document["server"]["saml"])
    (tmp_path / "idp.xml").write_text(saml_idp.metadata_xml())
    table.update(
        idp_metadata_file=str(tmp_path / "idp.xml"),
        sp_key_file=str(tmp_path / "sp.key"),
        sp_cert_file=str(tmp_path / "sp.crt"),
    )
    table["role_map"] = {"flowloom-admins": ["*:admin"]}  # the doc's projects need not exist
    settings = SamlSettings.from_mapping(table, public_url=document["server"]["public_url"])
    assert settings.acs_url == "https://flowloom.example.com/api/v1/auth/saml/acs"
    provider = SamlServiceProvider(settings)
    assert provider.begin().url.startswith(saml_idp.sso_url)
    # Every setting the doc's table names is one the code knows.
    names = set(re.findall(r"^\| `([a-z_]+)`", _section(), flags=re.M))
    names |= {"sp_cert_file", "name_attribute", "groups_attribute", "default_roles"}
    with pytest.raises(ConfigError) as info:
        SamlSettings.from_mapping({"nonsense": 1}, public_url="https://x.test")
    known = info.value.diagnostics()
    assert all(name in known for name in names), sorted(n for n in names if n not in known)
