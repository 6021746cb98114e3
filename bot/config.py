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

from bot.errors import ConfigError, OptionError
from bot.options import (
    ASPECT_RATIOS,
    CHAT,
    FLASH,
    IMAGE_SIZES,
    IMAGEN,
    IMAGEN_FAST,
    IMAGEN_RATIOS,
    IMAGEN_ULTRA,
    ONE_SHOT,
    PRO,
    ModelCaps,
    OptionInput,
    resolve_model,
)
from bot.policy import PolicyConfig, Rules, policy_from_toml
from bot.presentation import format_size
from bot.prices import PriceTable, prices_from_toml

DEFAULT_MODELS: dict[str, ModelCaps] = {
    FLASH: ModelCaps(label="Nano Banana", sizes=(), max_reference_images=3,
                     search=False, thinking=False),
    PRO: ModelCaps(label="Nano Banana Pro", sizes=("1K", "2K", "4K"), max_reference_images=14,
                   search=True, thinking=True),
    # Imagen 4: one-shot text-to-image through :predict (1-4 images a request, Ultra 1).
    IMAGEN: ModelCaps(label="Imagen 4", sizes=("1K", "2K"), max_reference_images=0,
                      kind=ONE_SHOT, ratios=IMAGEN_RATIOS, max_count=4),
    IMAGEN_ULTRA: ModelCaps(label="Imagen 4 Ultra", sizes=("1K", "2K"), max_reference_images=0,
                            kind=ONE_SHOT, ratios=IMAGEN_RATIOS, max_count=1),
    IMAGEN_FAST: ModelCaps(label="Imagen 4 Fast", sizes=(), max_reference_images=0,
                           kind=ONE_SHOT, ratios=IMAGEN_RATIOS, max_count=4),
}

DEFAULT_GEMINI_URL = "https://generativelanguage.googleapis.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DISCORD_API_BASE = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"
DEFAULT_SOURCE = "default location"
#: The bot scopes config/slack-manifest.yaml asks for (an OAuth install asks for the same).
SLACK_BOT_SCOPES = (
    "app_mentions:read", "channels:history", "chat:write", "commands", "files:read",
    "files:write", "groups:history", "im:history", "reactions:write", "users:read")
#: Below this an attachment limit refuses every real image.
MIN_ATTACHMENT_BYTES = 64 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
PG_SYNCHRONOUS_COMMIT = ("on", "off", "local", "remote_write", "remote_apply")


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. Environment variable names are in ``ENV``."""

    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    gemini_timeout: float = 300.0
    gemini_retry_attempts: int = 4
    gemini_retry_initial_delay: float = 2.0
    gemini_retry_max_delay: float = 30.0
    #: ``sqlite:////absolute/path`` or ``postgresql://user@host/db``; :func:`load_settings`
    #: fills in the default location.
    database_url: str = field(default="", repr=False)
    #: PostgreSQL's ``synchronous_commit`` for imagebot's connections; None: the server's
    #: own (normally ``on``: a committed turn is on disk). ``off`` is faster, not durable.
    pg_synchronous_commit: str | None = None
    #: Seconds a thread's line ticket lives unrenewed (how long a dead worker holds it up).
    lease_seconds: float = 30.0
    #: Turns one worker has at Gemini at once; more wait in arrival order (bot.capacity).
    max_concurrent_turns: int = 32
    default_model: str = "pro"
    default_aspect_ratio: str | None = None
    default_size: str | None = None
    default_search: bool = False
    default_image_only: bool = False
    max_reference_edge: int = 3072
    max_image_pixels: int = 50_000_000
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_request_bytes: int = 100 * 1024 * 1024
    #: Seconds between polls of a batch job at first (backing off to 20 times this).
    batch_poll_seconds: float = 30.0
    #: A batch whose inline requests would be larger goes up as a JSONL file instead.
    batch_inline_limit: int = 20_000_000
    #: History images go to Gemini's Files API once and are named by URI afterwards.
    use_files_api: bool = True
    #: Real thought signatures go back in this many most recent model turns (``all``: in
    #: every one); older ones carry Google's dummy. See :attr:`signature_window`.
    history_signatures: str = "1"
    models: Mapping[str, ModelCaps] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    offline: bool = False
    #: Seconds between the offline stand-in's stream chunks, so offline previews show
    #: thinking and drafts arriving as Gemini's do (0: all at once).
    offline_stream_gap: float = 0.4
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    slack_require_mention: bool = False
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_scopes: tuple[str, ...] = SLACK_BOT_SCOPES
    discord_shard_count: int | None = None
    discord_shard_ids: tuple[str, ...] = ()
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
    # Team controls: the installation-wide ones here; [policy] and [prices] in the file.
    admins: tuple[str, ...] = ()
    daily_images_per_user: int | None = None
    daily_images_per_channel: int | None = None
    daily_budget_usd: float | None = None
    web_admin_token: str | None = field(default=None, repr=False)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    prices: PriceTable = field(default_factory=PriceTable)

    @property
    def database_kind(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return "postgresql" if is_postgres_url(self.database_url) else "sqlite"

    @property
    def database_path(self) -> Path:
        """The SQLite file named by ``database_url`` (the default location when unset).

        Raises:
            ConfigError: for a URL that is not ``sqlite:///path``.
        """
        if not self.database_url:
            return default_database_path(os.environ)
        return database_path_of(self.database_url, "DATABASE_URL")

    def database_location(self) -> str:
        """The SQLite file, or the PostgreSQL URL without its password."""
        if self.database_kind == "postgresql":
            return redact_url(self.database_url)
        return str(self.database_path)

    def database_description(self) -> str:
        """Where the database is, for ``doctor`` and the start-up log line:
        ``/home/me/.local/share/imagebot/imagebot.sqlite3 (default location; set
        DATABASE_URL to use another)`` or ``/data/imagebot.sqlite3 (from DATABASE_URL)``."""
        if not self.database_url or self.database_source == DEFAULT_SOURCE:
            return f"{self.database_path} ({DEFAULT_SOURCE}; set DATABASE_URL to use another)"
        return f"{self.database_location()} (from {self.database_source or 'DATABASE_URL'})"

    @property
    def signature_window(self) -> int | None:
        """``history_signatures`` as a number of model turns (None: all of them)."""
        value = self.history_signatures.strip().lower()
        return None if value == "all" else int(value)

    @property
    def slack_oauth(self) -> bool:
        """Multi-workspace Slack: installs through OAuth instead of one bot token."""
        return bool(self.slack_client_id and self.slack_client_secret)

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
    "pg_synchronous_commit": "IMAGEBOT_PG_SYNCHRONOUS_COMMIT",
    "default_model": "IMAGEBOT_DEFAULT_MODEL",
    "default_aspect_ratio": "IMAGEBOT_DEFAULT_ASPECT_RATIO",
    "default_size": "IMAGEBOT_DEFAULT_SIZE",
    "default_search": "IMAGEBOT_DEFAULT_SEARCH",
    "max_reference_edge": "IMAGEBOT_MAX_REFERENCE_EDGE",
    "max_attachment_bytes": "IMAGEBOT_MAX_ATTACHMENT_BYTES",
    "batch_poll_seconds": "IMAGEBOT_BATCH_POLL_SECONDS",
    "offline_stream_gap": "IMAGEBOT_OFFLINE_STREAM_GAP",
    "use_files_api": "IMAGEBOT_USE_FILES_API",
    "history_signatures": "IMAGEBOT_HISTORY_SIGNATURES",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_api_url": "SLACK_API_URL",
    "slack_require_mention": "SLACK_REQUIRE_MENTION",
    "slack_client_id": "SLACK_CLIENT_ID",
    "slack_client_secret": "SLACK_CLIENT_SECRET",
    "slack_scopes": "SLACK_SCOPES",
    "discord_shard_count": "DISCORD_SHARD_COUNT",
    "discord_shard_ids": "DISCORD_SHARD_IDS",
    "lease_seconds": "IMAGEBOT_LEASE_SECONDS",
    "max_concurrent_turns": "IMAGEBOT_MAX_CONCURRENT_TURNS",
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
    "admins": "IMAGEBOT_ADMINS",
    "daily_images_per_user": "IMAGEBOT_DAILY_IMAGES_PER_USER",
    "daily_images_per_channel": "IMAGEBOT_DAILY_IMAGES_PER_CHANNEL",
    "daily_budget_usd": "IMAGEBOT_DAILY_BUDGET_USD",
    "web_admin_token": "IMAGEBOT_WEB_ADMIN_TOKEN",
}

_TYPES = {f.name: str(f.type) for f in fields(Settings)}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SQLITE_FORMS = "sqlite:////absolute/path/imagebot.sqlite3 or sqlite:///relative/path"
_DATABASE_FORMS = _SQLITE_FORMS + " or postgresql://user[:password]@host[:port]/database"
_PG_URL = re.compile(r"(postgres|postgresql)://([^@/\s]*@)?[^/\s]*/[^/?\s]+(\?\S*)?")


def is_postgres_url(url: str) -> bool:
    return url.strip().lower().startswith(("postgres://", "postgresql://"))


def redact_url(url: str) -> str:
    """A database URL fit for logs: any password replaced by ``***``."""
    return re.sub(r"(://[^:@/]*):[^@/]*@", r"\1:***@", url)


def database_password(url: str) -> str | None:
    """The password in a database URL, for log redaction."""
    match = re.search(r"://[^:@/]*:([^@/]*)@", url)
    return match.group(1) if match and match.group(1) else None


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
    if sep and scheme in ("postgres", "postgresql"):
        raise ConfigError(f"{label} names a PostgreSQL database, not an SQLite file")
    if sep and scheme in ("mysql", "mariadb"):
        raise ConfigError(f"{label}: {scheme} databases are not supported; use "
                          f"{_DATABASE_FORMS}")
    if scheme != "sqlite" or not rest.startswith("/") or not rest.strip("/"):
        raise ConfigError(f"{label} must be {_DATABASE_FORMS}, got {redact_url(url)!r}")
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
    if name == "history_signatures" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # TOML: history_signatures = 1 or "all"
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
        if "ratios" in spec:
            spec["ratios"] = tuple(str(r) for r in spec["ratios"])
        if spec.get("kind", CHAT) not in (CHAT, ONE_SHOT):
            raise ConfigError(f'{where}: kind must be "{CHAT}" or "{ONE_SHOT}", '
                              f"got {spec['kind']!r}")
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
        tables: dict[str, Any] = {name: data.pop(name) for name in ("policy", "prices")
                                  if name in data}
        unknown = set(data) - set(_TYPES) - {"database_source"}
        if unknown:
            raise ConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))} (the keys "
                              "are the documented setting names, e.g. port, default_model)")
        for key, value in data.items():
            sources[key] = f"{path}: {key}"
            values[key] = _coerce(key, value, sources[key])
        if models:
            values["models"] = _models_from_toml(models, path)
        values.update(tables)
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
    _team_controls(values)
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
    if is_postgres_url(url):
        if not _PG_URL.fullmatch(url.strip()):
            raise ConfigError(f"{label} must be postgresql://user[:password]@host[:port]/"
                              f"database, got {redact_url(url)!r}")
        return {"database_url": url.strip(), "database_source": label}
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
    if s.pg_synchronous_commit not in (None, *PG_SYNCHRONOUS_COMMIT):
        raise ConfigError(f"{label('pg_synchronous_commit')} must be one of "
                          f"{', '.join(PG_SYNCHRONOUS_COMMIT)} (PostgreSQL's synchronous_commit)"
                          f", got {s.pg_synchronous_commit!r}")
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
    if s.discord_shard_count is not None and s.discord_shard_count <= 0:
        raise ConfigError(f"{label('discord_shard_count')} must be more than 0, "
                          f"got {s.discord_shard_count}")
    _check_shard_ids(s, label)
    for name in ("lease_seconds", "gemini_timeout", "gemini_retry_attempts",
                 "gemini_retry_initial_delay", "gemini_retry_max_delay", "max_reference_edge", "max_image_pixels",
                 "max_request_bytes", "batch_poll_seconds", "batch_inline_limit",
                 "max_concurrent_turns"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{label(name)} must be more than 0, got {getattr(s, name)}")
    if not re.fullmatch(r"all|\d+", s.history_signatures.strip().lower()):
        raise ConfigError(f"{label('history_signatures')} must be all or a number of model "
                          f"turns (0 or more), got {s.history_signatures!r}")
    if not 0 <= s.offline_stream_gap <= 60:
        raise ConfigError(f"{label('offline_stream_gap')} must be from 0 to 60 seconds, "
                          f"got {s.offline_stream_gap}")
    _check_urls(s, label)


def _check_urls(s: Settings, label: Any) -> None:
    for name, schemes in (("gemini_base_url", ("http", "https")),
                          ("slack_api_url", ("http", "https")),
                          ("discord_api_base", ("http", "https")),
                          ("discord_gateway_url", ("ws", "wss"))):
        url = getattr(s, name)
        if url and not re.match(rf"({'|'.join(schemes)})://[^/\s]+", url):
            raise ConfigError(f"{label(name)} must be a {' or '.join(schemes)} URL, "
                              f"got {url!r}")


def _team_controls(values: dict[str, Any]) -> None:
    """``[policy]`` and ``[prices]`` as values, with the installation-wide settings given
    by name (environment, top-level keys) over the ``[policy]`` table's own."""
    policy = values.get("policy") or {}
    if not isinstance(policy, PolicyConfig):
        policy = policy_from_toml(policy)
    named = Rules(admins=values.get("admins") or None,
                  daily_images_per_user=values.get("daily_images_per_user"),
                  daily_images_per_channel=values.get("daily_images_per_channel"),
                  daily_budget_usd=values.get("daily_budget_usd"))
    values["policy"] = replace(policy, installation=named.over(policy.installation))
    prices = values.get("prices")
    if prices is not None and not isinstance(prices, PriceTable):
        values["prices"] = prices_from_toml(prices)


def _check_shard_ids(s: Settings, label: Any) -> None:
    ids = s.discord_shard_ids
    if not ids:
        return
    if not all(i.isdigit() for i in ids):
        raise ConfigError(f"{label('discord_shard_ids')} must be shard numbers like 0,1, "
                          f"got {','.join(ids)!r}")
    if s.discord_shard_count is None:
        raise ConfigError(f"{label('discord_shard_ids')} needs DISCORD_SHARD_COUNT (the total "
                          "number of shards across all workers)")
    if any(int(i) >= s.discord_shard_count for i in ids):
        raise ConfigError(f"{label('discord_shard_ids')} must be below DISCORD_SHARD_COUNT "
                          f"({s.discord_shard_count}), got {','.join(ids)!r}")
