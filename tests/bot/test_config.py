"""Settings: defaults, TOML file, environment precedence, secrets kept out of repr."""

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
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


def test_database_url(tmp_path):
    settings = load_settings(env={"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    assert settings.database_path == tmp_path / "db.sqlite3"
    assert settings.database_description() == f"{tmp_path / 'db.sqlite3'} (from DATABASE_URL)"
    with pytest.raises(ValueError):
        load_settings(env={"DATABASE_URL": "postgres://x"})


def test_a_postgresql_url_is_taken_as_is_and_its_password_never_shown():
    url = "postgresql://bot:s3cret@db.internal:5432/imagebot?search_path=tenant1"
    settings = load_settings(env={"DATABASE_URL": url})
    assert settings.database_kind == "postgresql" and settings.database_url == url
    assert settings.database_description() == (
        "postgresql://bot:***@db.internal:5432/imagebot?search_path=tenant1 (from DATABASE_URL)")
    assert "s3cret" not in repr(settings)


def test_the_default_database_is_one_place_wherever_imagebot_runs(tmp_path, monkeypatch):
    env = {"HOME": str(tmp_path / "home")}
    expected = tmp_path / "home" / ".local" / "share" / "imagebot" / "imagebot.sqlite3"
    (tmp_path / "elsewhere").mkdir()
    for folder in (tmp_path, tmp_path / "elsewhere"):
        monkeypatch.chdir(folder)
        assert load_settings(env=env).database_path == expected
    xdg = load_settings(env={**env, "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert xdg.database_path == tmp_path / "xdg" / "imagebot" / "imagebot.sqlite3"
    assert load_settings(env=env).database_description() == (
        f"{expected} (default location; set DATABASE_URL to use another)")
    assert not (tmp_path / "home").exists()  # loading settings creates nothing


def test_a_relative_database_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"DATABASE_URL": "sqlite:///bot.sqlite3"})
    assert settings.database_path == tmp_path / "bot.sqlite3"
    assert settings.database_url == f"sqlite:///{tmp_path}/bot.sqlite3"


def test_a_missing_folder_of_an_explicit_path_is_an_error_not_created(tmp_path):
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    with pytest.raises(ConfigError) as err:
        load_settings(env={"DATABASE_URL": url})
    assert str(err.value) == (
        f"DATABASE_URL: the folder {tmp_path}/nonexistent/dir does not exist; create it, or "
        "choose a file in an existing folder (sqlite:////absolute/path/imagebot.sqlite3 or "
        "sqlite:///relative/path)")
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize(("env", "message"), [
    ({"DATABASE_URL": "postgresql://db.example"},
     "DATABASE_URL must be postgresql://user[:password]@host[:port]/database, got "
     "'postgresql://db.example'"),
    ({"DATABASE_URL": "mysql://db.example/imagebot"},
     "DATABASE_URL: mysql databases are not supported; use sqlite:////absolute/path/"
     "imagebot.sqlite3 or sqlite:///relative/path or postgresql://user[:password]@host"
     "[:port]/database"),
    ({"DATABASE_URL": "imagebot.db"},
     "DATABASE_URL must be sqlite:////absolute/path/imagebot.sqlite3 or "
     "sqlite:///relative/path or postgresql://user[:password]@host[:port]/database, got "
     "'imagebot.db'"),
    ({"DISCORD_SHARD_IDS": "0,1"},
     "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total number of shards across all "
     "workers)"),
    ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,2"},
     "DISCORD_SHARD_IDS must be below DISCORD_SHARD_COUNT (2), got '1,2'"),
    ({"IMAGEBOT_LEASE_SECONDS": "0"}, "IMAGEBOT_LEASE_SECONDS must be more than 0, got 0.0"),
    ({"IMAGEBOT_PORT": "abc"}, "IMAGEBOT_PORT must be a whole number, got 'abc'"),
    ({"IMAGEBOT_PORT": "99999"},
     "IMAGEBOT_PORT must be a port number from 1 to 65535, got 99999"),
    ({"IMAGEBOT_LOG_LEVEL": "LOUD"},
     "IMAGEBOT_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ({"IMAGEBOT_LOG_FORMAT": "yaml"}, "IMAGEBOT_LOG_FORMAT must be text or json, got 'yaml'"),
    ({"IMAGEBOT_DEFAULT_MODEL": "dalle"},
     "IMAGEBOT_DEFAULT_MODEL must be flash, pro, or a Gemini model id (gemini-…), got 'dalle'"),
    ({"IMAGEBOT_DEFAULT_ASPECT_RATIO": "7:5"}, "IMAGEBOT_DEFAULT_ASPECT_RATIO must be auto"),
    ({"IMAGEBOT_DEFAULT_SIZE": "8K"}, "IMAGEBOT_DEFAULT_SIZE must be auto or one of 1K"),
    ({"IMAGEBOT_MAX_ATTACHMENT_BYTES": "5000"},
     "IMAGEBOT_MAX_ATTACHMENT_BYTES must be at least 65536 (64 KB), got 5000 (4.9 KB); "
     "the default is 31457280 (30 MB)"),
    ({"IMAGEBOT_DEFAULT_SEARCH": "maybe"},
     "IMAGEBOT_DEFAULT_SEARCH must be true or false, got 'maybe'"),
    ({"GEMINI_TIMEOUT": "soon"}, "GEMINI_TIMEOUT must be a number, got 'soon'"),
    ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL must be a http or https URL"),
    ({"IMAGEBOT_CONFIG": "/nonexistent/imagebot.toml"},
     "IMAGEBOT_CONFIG: no such settings file: /nonexistent/imagebot.toml"),
])
def test_each_bad_value_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text, text


def test_bad_toml_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("port = \"abc\"\n")
    with pytest.raises(ConfigError, match=f"^{path}: port must be a whole number, got 'abc'$"):
        load_settings(path, env={})
    path.write_text("port = [oops\n")
    with pytest.raises(ConfigError, match=f"^--config: {path} is not valid TOML: .*line 1"):
        load_settings(path, env={})
    path.write_text('log_level = "LOUD"\n')
    with pytest.raises(ConfigError, match=f"^{path}: log_level must be one of DEBUG"):
        load_settings(path, env={})
    with pytest.raises(ConfigError, match="^--config: no such settings file"):
        load_settings(tmp_path / "missing.toml", env={})
