"""Server settings: environment, `[server]` table, the key file read on use, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.config import load_settings
from flowloom.errors import ConfigError


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **extra}


def user_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "home" / ".config" / "flowloom" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_server_by_default(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env_for(tmp_path))
    assert settings.server_url is None and settings.server_api_key() is None


def test_the_environment_names_the_server_and_key_and_repr_hides_the_key(tmp_path: Path) -> None:
    env = env_for(
        tmp_path,
        FLOWLOOM_SERVER="https://flowloom.example.com/",
        FLOWLOOM_API_KEY="flk_abcdefgh_secretsecret",
        FLOWLOOM_SERVER_VKEY="x+01234567+AAAA",
    )
    settings = load_settings(tmp_path, env)
    assert settings.server_url == "https://flowloom.example.com"
    assert settings.server_api_key() == "flk_abcdefgh_secretsecret"
    assert settings.server_vkey == "x+01234567+AAAA"
    assert "secretsecret" not in repr(settings)


def test_the_server_table_and_a_key_file_relative_to_the_config(tmp_path: Path) -> None:
    user_config(
        tmp_path,
        '[server]\nurl = "http://127.0.0.1:8470"\napi_key_file = "key.txt"\nport = 9000\n',
    )
    settings = load_settings(tmp_path, env_for(tmp_path))
    assert settings.server_url == "http://127.0.0.1:8470"
    key_file = tmp_path / "home" / ".config" / "flowloom" / "key.txt"
    assert settings.api_key_file == key_file
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        settings.server_api_key()  # read on use: other commands still work
    key_file.write_text("flk_abcdefgh_fromfile\n")
    assert settings.server_api_key() == "flk_abcdefgh_fromfile"
    override = load_settings(tmp_path, env_for(tmp_path, FLOWLOOM_API_KEY="flk_x_env"))
    assert override.server_api_key() == "flk_x_env"


def test_a_key_in_a_config_file_is_refused(tmp_path: Path) -> None:
    user_config(tmp_path, '[server]\nurl = "http://h"\napi_key = "flk_oops"\n')
    with pytest.raises(ConfigError, match="does not belong in a config file") as caught:
        load_settings(tmp_path, env_for(tmp_path))
    assert "flk_oops" not in caught.value.diagnostics()


def test_a_bad_server_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        load_settings(tmp_path, env_for(tmp_path, FLOWLOOM_SERVER="flowloom.example.com"))


def test_the_same_project_named_again_keeps_the_chosen_origin(tmp_path: Path) -> None:
    """FLOWLOOM_PROJECT reaches the CLI twice (settings and click's --project envvar);
    naming the same project again must not swap FLOWLOOM_ORIGIN for a default origin,
    which would key the existing log anew. Another project gets its own default."""
    env = env_for(tmp_path, FLOWLOOM_PROJECT="acme", FLOWLOOM_ORIGIN="flowloom.example.com/acme")
    settings = load_settings(tmp_path, env)
    assert settings.with_overrides(project="acme").origin == "flowloom.example.com/acme"
    assert settings.with_overrides(project="other").origin == "flowloom.local/other"
