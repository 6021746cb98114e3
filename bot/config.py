"""Configuration: defaults, an optional TOML file, then environment variables (highest).

Secrets are kept out of ``repr`` so a logged settings object never shows them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.options import FLASH, PRO, ModelCaps, OptionInput
from bot.policy import PolicyConfig, Rules, policy_from_toml
from bot.prices import PriceTable, prices_from_toml

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


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. Environment variable names are in ``ENV``."""

    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    gemini_timeout: float = 300.0
    gemini_retry_attempts: int = 4
    gemini_retry_initial_delay: float = 2.0
    gemini_retry_max_delay: float = 30.0
    database_url: str = "sqlite:///data/imagebot.sqlite3"
    default_model: str = "pro"
    default_aspect_ratio: str | None = None
    default_size: str | None = None
    default_search: bool = False
    default_image_only: bool = False
    max_reference_edge: int = 3072
    max_image_pixels: int = 50_000_000
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_request_bytes: int = 20 * 1024 * 1024
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
    # Team controls: the installation-wide ones here; [policy] and [prices] in the file.
    admins: tuple[str, ...] = ()
    daily_images_per_user: int | None = None
    daily_images_per_channel: int | None = None
    daily_budget_usd: float | None = None
    web_admin_token: str | None = field(default=None, repr=False)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    prices: PriceTable = field(default_factory=PriceTable)

    @property
    def database_path(self) -> Path:
        """The SQLite file named by ``database_url`` (``sqlite:///relative`` or ``sqlite:////abs``)."""
        url = self.database_url
        if not url.startswith("sqlite:///"):
            raise ValueError(f"DATABASE_URL must look like sqlite:///path, got {url!r}")
        return Path(url[len("sqlite:///"):])

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
    "admins": "IMAGEBOT_ADMINS",
    "daily_images_per_user": "IMAGEBOT_DAILY_IMAGES_PER_USER",
    "daily_images_per_channel": "IMAGEBOT_DAILY_IMAGES_PER_CHANNEL",
    "daily_budget_usd": "IMAGEBOT_DAILY_BUDGET_USD",
    "web_admin_token": "IMAGEBOT_WEB_ADMIN_TOKEN",
}

_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    kind = str(_TYPES[name])
    if isinstance(value, str):
        value = value.strip()
        if kind.startswith("bool"):
            if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(f"{name}: expected true or false, got {value!r}")
            return value.lower() in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("tuple"):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if value == "" and "None" in kind:
            return None
    if kind.startswith("tuple") and isinstance(value, list):
        return tuple(str(v) for v in value)
    return value


def _models_from_toml(table: Mapping[str, Any]) -> dict[str, ModelCaps]:
    models = dict(DEFAULT_MODELS)
    for model_id, spec in table.items():
        base = models.get(model_id, ModelCaps(label=model_id))
        spec = dict(spec)
        if "sizes" in spec:
            spec["sizes"] = tuple(str(s).upper() for s in spec["sizes"])
        models[model_id] = replace(base, **spec)
    return models


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Builds settings from defaults, the TOML file, the environment, then ``overrides``.

    The TOML file is ``config_file``, else ``$IMAGEBOT_CONFIG`` if set. Its keys are the
    field names of :class:`Settings`; a ``[models."<id>"]`` table adds or changes entries of
    the capability table.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or env.get("IMAGEBOT_CONFIG")
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        models = data.pop("models", None)
        tables: dict[str, Any] = {name: data.pop(name) for name in ("policy", "prices")
                                  if name in data}
        unknown = set(data) - set(_TYPES)
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v) for k, v in data.items()})
        if models:
            values["models"] = _models_from_toml(models)
        values.update(tables)
    for name, var in ENV.items():
        if env.get(var) not in (None, ""):
            values[name] = _coerce(name, env[var])
    if not values.get("gemini_api_key") and env.get("GOOGLE_API_KEY"):
        values["gemini_api_key"] = env["GOOGLE_API_KEY"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    _team_controls(values)
    return Settings(**values)


def _team_controls(values: dict[str, Any]) -> None:
    """``[policy]`` and ``[prices]`` as values, with the installation-wide settings given
    by name (environment, top-level keys) over the ``[policy]`` table's own."""
    policy = values.get("policy") or {}
    if not isinstance(policy, PolicyConfig):
        try:
            policy = policy_from_toml(policy)
        except ConfigError as exc:
            raise ValueError(exc.user_message) from None
    named = Rules(admins=values.get("admins") or None,
                  daily_images_per_user=values.get("daily_images_per_user"),
                  daily_images_per_channel=values.get("daily_images_per_channel"),
                  daily_budget_usd=values.get("daily_budget_usd"))
    values["policy"] = replace(policy, installation=named.over(policy.installation))
    prices = values.get("prices")
    if prices is not None and not isinstance(prices, PriceTable):
        values["prices"] = prices_from_toml(prices)
