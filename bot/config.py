"""Configuration: defaults, an optional TOML file, then environment variables (highest).

Everything is checked when it is loaded: a bad value is a :class:`ConfigError` whose message
is one line naming the variable (or file and key) and what it accepts. Secrets are kept out
of ``repr`` so a logged settings object never shows them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bot.errors import OptionError
from bot.options import (
    ASPECT_RATIOS,
    FLASH,
    IMAGE_SIZES,
    PRO,
    ModelCaps,
    OptionInput,
    resolve_model,
)
from bot.presentation import format_size

DEFAULT_MODELS: dict[str, ModelCaps] = {
    FLASH: ModelCaps(label="Nano Banana", sizes=(), max_reference_images=3,
                     search=False, thinking=False),
    PRO: ModelCaps(label="Nano Banana Pro", sizes=("1K", "2K", "4K"), max_reference_images=14,
                   search=True, thinking=True),
}

DEFAULT_GEMINI_URL = "https://generativelanguage.googleapis.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DISCORD_API_BASE = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"
DEFAULT_SOURCE = "default location"
#: Below this an attachment limit refuses every real image.
MIN_ATTACHMENT_BYTES = 64 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting that cannot be used. The message is one line: the variable (or file and
    key), what it accepts and what it got."""


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. Environment variable names are in ``ENV``."""

    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    gemini_timeout: float = 300.0
    gemini_retry_attempts: int = 4
    gemini_retry_initial_delay: float = 2.0
    gemini_retry_max_delay: float = 30.0
    #: ``sqlite:////absolute/path``; :func:`load_settings` fills in the default location.
    database_url: str = ""
    default_model: str = "pro"
    default_aspect_ratio: str | None = None
    default_size: str | None = None
    default_search: bool = False
    default_image_only: bool = False
    max_reference_edge: int = 3072
    max_image_pixels: int = 50_000_000
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_request_bytes: int = 100 * 1024 * 1024
    #: History images go to Gemini's Files API once and are named by URI afterwards.
    use_files_api: bool = True
    models: Mapping[str, ModelCaps] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    offline: bool = False
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    slack_require_mention: bool = False
    discord_token: str | None = field(default=None, repr=False)
    discord_api_base: str = DEFAULT_DISCORD_API_BASE
    discord_gateway_url: str = DEFAULT_DISCORD_GATEWAY_URL
    discord_guild_ids: tuple[str, ...] = ()
    web_token: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8765
    log_format: str = "text"
    log_level: str = "INFO"
    debug_third_party: bool = False
    #: Where ``database_url`` came from ("DATABASE_URL", a file...), for messages.
    database_source: str = field(default="", repr=False, compare=False)

    @property
    def database_path(self) -> Path:
        """The SQLite file named by ``database_url`` (the default location when unset).

        Raises:
            ConfigError: for a URL that is not ``sqlite:///path``.
        """
        if not self.database_url:
            return default_database_path(os.environ)
        return database_path_of(self.database_url, "DATABASE_URL")

    def database_description(self) -> str:
        """Where the database is, for ``doctor`` and the start-up log line:
        ``/home/me/.local/share/imagebot/imagebot.sqlite3 (default location; set
        DATABASE_URL to use another)`` or ``/data/imagebot.sqlite3 (from DATABASE_URL)``."""
        if not self.database_url or self.database_source == DEFAULT_SOURCE:
            return f"{self.database_path} ({DEFAULT_SOURCE}; set DATABASE_URL to use another)"
        return f"{self.database_path} (from {self.database_source or 'DATABASE_URL'})"

    @property
    def option_defaults(self) -> OptionInput:
        return OptionInput(
            model=self.default_model,
            aspect_ratio=self.default_aspect_ratio,
            size=self.default_size,
            search=self.default_search,
            image_only=self.default_image_only,
        )


ENV: dict[str, str] = {
    "gemini_api_key": "GEMINI_API_KEY",
    "gemini_base_url": "GEMINI_BASE_URL",
    "gemini_timeout": "GEMINI_TIMEOUT",
    "gemini_retry_attempts": "GEMINI_RETRY_ATTEMPTS",
    "database_url": "DATABASE_URL",
    "default_model": "IMAGEBOT_DEFAULT_MODEL",
    "default_aspect_ratio": "IMAGEBOT_DEFAULT_ASPECT_RATIO",
    "default_size": "IMAGEBOT_DEFAULT_SIZE",
    "default_search": "IMAGEBOT_DEFAULT_SEARCH",
    "max_reference_edge": "IMAGEBOT_MAX_REFERENCE_EDGE",
    "max_attachment_bytes": "IMAGEBOT_MAX_ATTACHMENT_BYTES",
    "use_files_api": "IMAGEBOT_USE_FILES_API",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_api_url": "SLACK_API_URL",
    "slack_require_mention": "SLACK_REQUIRE_MENTION",
    "discord_token": "DISCORD_TOKEN",
    "discord_api_base": "DISCORD_API_BASE",
    "discord_gateway_url": "DISCORD_GATEWAY_URL",
    "discord_guild_ids": "DISCORD_GUILD_IDS",
    "web_token": "IMAGEBOT_WEB_TOKEN",
    "host": "IMAGEBOT_HOST",
    "port": "IMAGEBOT_PORT",
    "log_format": "IMAGEBOT_LOG_FORMAT",
    "log_level": "IMAGEBOT_LOG_LEVEL",
    "debug_third_party": "IMAGEBOT_DEBUG_THIRD_PARTY",
}

_TYPES = {f.name: str(f.type) for f in fields(Settings)}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SQLITE_FORMS = "sqlite:////absolute/path/imagebot.sqlite3 or sqlite:///relative/path"


def default_database_path(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/imagebot/imagebot.sqlite3``, by default
    ``~/.local/share/imagebot/imagebot.sqlite3``: the same file wherever imagebot runs."""
    data_home = env.get("XDG_DATA_HOME", "")
    if not Path(data_home).is_absolute():  # the XDG spec says to ignore relative paths
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        data_home = str(home / ".local" / "share")
    return Path(data_home) / "imagebot" / "imagebot.sqlite3"


def database_path_of(url: str, label: str) -> Path:
    """The file a ``sqlite:///path`` URL names (relative paths against the current folder).

    Raises:
        ConfigError: for any other URL, saying which forms are accepted.
    """
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower().split("+")[0]
    if sep and scheme in ("postgres", "postgresql", "mysql", "mariadb"):
        raise ConfigError(f"{label}: {scheme} databases are not supported yet; use SQLite: "
                          f"{_SQLITE_FORMS}")
    if scheme != "sqlite" or not rest.startswith("/") or not rest.strip("/"):
        raise ConfigError(f"{label} must be {_SQLITE_FORMS}, got {url!r}")
    return Path(os.path.abspath(rest[1:]))


def _coerce(name: str, value: Any, label: str) -> Any:
    kind = _TYPES[name]
    if isinstance(value, str):
        value = value.strip()
        if value == "" and "None" in kind:
            return None
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{label} must be true or false, got {value!r}")
    if kind.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d[\d_]*", value):
            return int(value)
        raise ConfigError(f"{label} must be a whole number, got {value!r}")
    if kind.startswith("float"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{label} must be a number, got {value!r}") from None
    if kind.startswith("tuple"):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list):
            return tuple(str(v) for v in value)
        raise ConfigError(f"{label} must be a list, got {value!r}")
    if kind.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {value!r}")
    return value


def _models_from_toml(table: Any, path: str) -> dict[str, ModelCaps]:
    models = dict(DEFAULT_MODELS)
    if not isinstance(table, Mapping):
        raise ConfigError(f'{path}: models must be tables like [models."gemini-…"]')
    known = {f.name for f in fields(ModelCaps)}
    for model_id, spec in table.items():
        where = f'{path}: [models."{model_id}"]'
        if not isinstance(spec, Mapping) or set(spec) - known:
            raise ConfigError(f"{where} takes only the keys {', '.join(sorted(known))}")
        base = models.get(model_id, ModelCaps(label=model_id))
        spec = dict(spec)
        if "sizes" in spec:
            spec["sizes"] = tuple(str(s).upper() for s in spec["sizes"])
        models[model_id] = replace(base, **spec)
    return models


def _read_toml(path: str, label: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such settings file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror or exc}") from None


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Builds settings from defaults, the TOML file, the environment, then ``overrides``.

    The TOML file is ``config_file``, else ``$IMAGEBOT_CONFIG`` if set. Its keys are the
    field names of :class:`Settings`; a ``[models."<id>"]`` table adds or changes entries of
    the capability table.

    Raises:
        ConfigError: one line naming the variable or file and what it accepts.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = str(config_file or env.get("IMAGEBOT_CONFIG") or "")
    if path:
        data = _read_toml(path, "--config" if config_file else "IMAGEBOT_CONFIG")
        models = data.pop("models", None)
        unknown = set(data) - set(_TYPES) - {"database_source"}
        if unknown:
            raise ConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))} (the keys "
                              "are the documented setting names, e.g. port, default_model)")
        for key, value in data.items():
            sources[key] = f"{path}: {key}"
            values[key] = _coerce(key, value, sources[key])
        if models:
            values["models"] = _models_from_toml(models, path)
    for name, var in ENV.items():
        if env.get(var) not in (None, ""):
            sources[name] = var
            values[name] = _coerce(name, env[var], var)
    if not values.get("gemini_api_key") and env.get("GOOGLE_API_KEY"):
        values["gemini_api_key"] = env["GOOGLE_API_KEY"]
    for name, value in overrides.items():
        if value is not None:
            sources[name] = "--" + name.replace("_", "-")
            values[name] = value
    values.update(_database(values.get("database_url"), sources.get("database_url"), env))
    settings = Settings(**values)
    _check(settings, lambda name: sources.get(name) or ENV.get(name) or name,
           configured=set(sources) - set(overrides))
    return settings


def _database(url: str | None, source: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """The absolute ``database_url`` and where it came from. An explicit path's folder must
    exist: only the default location is ever created (by the store, on first use)."""
    if not url:
        return {"database_url": f"sqlite:///{default_database_path(env)}",
                "database_source": DEFAULT_SOURCE}
    label = source or "DATABASE_URL"
    path = database_path_of(url, label)
    if path.is_dir():
        raise ConfigError(f"{label}: {path} is a folder; name the database file in it, "
                          f"e.g. sqlite:///{path / 'imagebot.sqlite3'}")
    if not path.parent.is_dir():
        raise ConfigError(f"{label}: the folder {path.parent} does not exist; create it, or "
                          f"choose a file in an existing folder ({_SQLITE_FORMS})")
    return {"database_url": f"sqlite:///{path}", "database_source": label}


def _check(s: Settings, label: Any, configured: set[str]) -> None:
    """Checks values that parse but cannot work, so they fail at start, not at a turn.

    ``configured`` names the settings that came from the environment or the file: limits
    that no real image fits are refused there, while code (tests) may pass tiny ones.
    """
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"{label('port')} must be a port number from 1 to 65535, "
                          f"got {s.port}")
    if s.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"{label('log_level')} must be one of {', '.join(LOG_LEVELS)}, "
                          f"got {s.log_level!r}")
    if s.log_format not in LOG_FORMATS:
        raise ConfigError(f"{label('log_format')} must be text or json, got {s.log_format!r}")
    try:
        resolve_model(s.default_model)
    except OptionError:
        raise ConfigError(f"{label('default_model')} must be flash, pro, or a Gemini model id "
                          f"(gemini-…), got {s.default_model!r}") from None
    ratio = (s.default_aspect_ratio or "auto").strip()
    if ratio.lower() != "auto" and ratio not in ASPECT_RATIOS:
        raise ConfigError(f"{label('default_aspect_ratio')} must be auto or one of "
                          f"{', '.join(ASPECT_RATIOS)}, got {ratio!r}")
    size = (s.default_size or "auto").strip().upper()
    if size != "AUTO" and size not in IMAGE_SIZES:
        raise ConfigError(f"{label('default_size')} must be auto or one of "
                          f"{', '.join(IMAGE_SIZES)}, got {s.default_size!r}")
    if s.max_attachment_bytes <= 0 or (s.max_attachment_bytes < MIN_ATTACHMENT_BYTES
                                       and "max_attachment_bytes" in configured):
        raise ConfigError(
            f"{label('max_attachment_bytes')} must be at least {MIN_ATTACHMENT_BYTES} "
            f"({format_size(MIN_ATTACHMENT_BYTES)}), got {s.max_attachment_bytes} "
            f"({format_size(s.max_attachment_bytes)}); the default is 31457280 (30 MB)")
    for name in ("gemini_timeout", "gemini_retry_attempts", "gemini_retry_initial_delay",
                 "gemini_retry_max_delay", "max_reference_edge", "max_image_pixels",
                 "max_request_bytes"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{label(name)} must be more than 0, got {getattr(s, name)}")
    for name, schemes in (("gemini_base_url", ("http", "https")),
                          ("slack_api_url", ("http", "https")),
                          ("discord_api_base", ("http", "https")),
                          ("discord_gateway_url", ("ws", "wss"))):
        url = getattr(s, name)
        if url and not re.match(rf"({'|'.join(schemes)})://[^/\s]+", url):
            raise ConfigError(f"{label(name)} must be a {' or '.join(schemes)} URL, "
                              f"got {url!r}")
