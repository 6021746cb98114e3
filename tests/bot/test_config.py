"""Settings: defaults, TOML file, environment precedence, secrets kept out of repr."""

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.options import PRO

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "imagebot.example.toml"


def test_example_config_loads_and_matches_defaults():
    from_file = load_settings(EXAMPLE, env={})
    assert from_file == load_settings(env={})
    assert from_file.models[PRO].max_reference_images == 14


def test_env_beats_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('port = 9000\ndefault_model = "flash"\n')
    settings = load_settings(path, env={"IMAGEBOT_PORT": "9100", "DISCORD_GUILD_IDS": "1, 2"})
    assert settings.port == 9100 and settings.default_model == "flash"
    assert settings.discord_guild_ids == ("1", "2")


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings(path, env={})


def test_models_table_extends(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[models."gemini-9-image"]\nlabel = "Nine"\nsizes = ["1k", "2k"]\n')
    settings = load_settings(path, env={})
    assert settings.models["gemini-9-image"].sizes == ("1K", "2K")


def test_secrets_not_in_repr():
    settings = load_settings(env={"GEMINI_API_KEY": "AIzaSECRETSECRET", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert "SECRET" not in repr(settings) and "xoxb" not in repr(settings)


def test_database_url():
    settings = load_settings(env={"DATABASE_URL": "sqlite:////var/lib/imagebot/db.sqlite3"})
    assert str(settings.database_path) == "/var/lib/imagebot/db.sqlite3"
    with pytest.raises(ValueError):
        _ = load_settings(env={"DATABASE_URL": "postgres://x"}).database_path


def test_bad_bool():
    with pytest.raises(ValueError, match="true or false"):
        load_settings(env={"IMAGEBOT_DEFAULT_SEARCH": "maybe"})
