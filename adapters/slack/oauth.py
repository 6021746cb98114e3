"""Multi-workspace Slack: bolt's OAuth flow with installations and OAuth states kept in
imagebot's database (through :class:`bot.installations.Installations`), so every worker
can finish any install and serve every installed workspace.

An installation is kept per workspace (``enterprise_id:team_id``); bolt asks for it by
the ids of each incoming request and gets that workspace's bot token.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.config import Settings
from bot.installations import Installations

logger = logging.getLogger(__name__)

PLATFORM = "slack"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


def workspace_key(enterprise_id: str | None, team_id: str | None,
                  is_enterprise_install: bool | None = False) -> str:
    """One key per workspace (or per org, for an org-wide install)."""
    return f"{enterprise_id or ''}:{'' if is_enterprise_install else team_id or ''}"


class DatabaseInstallationStore(AsyncInstallationStore):
    """bolt's installation store, backed by imagebot's database."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_save(self, installation: Installation) -> None:
        key = workspace_key(installation.enterprise_id, installation.team_id,
                            installation.is_enterprise_install)
        await self.installations.save(PLATFORM, key, _plain(installation.__dict__))
        logger.info("Slack workspace %s installed imagebot", installation.team_id
                    or installation.enterprise_id)

    async def async_find_installation(self, *, enterprise_id: str | None,
                                      team_id: str | None, user_id: str | None = None,
                                      is_enterprise_install: bool | None = False
                                      ) -> Installation | None:
        data = await self.installations.find(
            PLATFORM, workspace_key(enterprise_id, team_id, is_enterprise_install))
        return Installation(**data) if data else None

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        installation = await self.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id,
            is_enterprise_install=is_enterprise_install)
        return installation.to_bot() if installation and installation.bot_token else None

    async def async_delete_installation(self, *, enterprise_id: str | None,
                                        team_id: str | None,
                                        user_id: str | None = None) -> None:
        await self.installations.delete(PLATFORM, workspace_key(enterprise_id, team_id))

    async def async_delete_bot(self, *, enterprise_id: str | None,
                               team_id: str | None) -> None:
        await self.installations.delete(PLATFORM, workspace_key(enterprise_id, team_id))


class DatabaseStateStore(AsyncOAuthStateStore):
    """One-time OAuth states in imagebot's database: any worker may take the callback."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await self.installations.issue_state()

    async def async_consume(self, state: str) -> bool:
        return await self.installations.consume_state(state)


def authorization_url(api_url: str) -> str:
    """Slack's authorize page beside its Web API (``https://slack.com/oauth/v2/authorize``)."""
    return api_url.rstrip("/").removesuffix("/api") + "/oauth/v2/authorize"


def oauth_settings(settings: Settings, installations: Installations) -> AsyncOAuthSettings:
    return AsyncOAuthSettings(
        client_id=settings.slack_client_id, client_secret=settings.slack_client_secret,
        scopes=list(settings.slack_scopes), install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorization_url(settings.slack_api_url),
        installation_store=DatabaseInstallationStore(installations),
        state_store=DatabaseStateStore(installations))


def mount_oauth(app: web.Application, bolt: AsyncApp) -> None:
    """Serves ``/slack/install`` and ``/slack/oauth_redirect`` through bolt's flow."""
    flow = bolt.oauth_flow
    assert flow is not None

    async def install(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(
            await flow.handle_installation(await to_bolt_request(request)))

    async def redirect(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(
            await flow.handle_callback(await to_bolt_request(request)))

    app.router.add_get(INSTALL_PATH, install)
    app.router.add_get(REDIRECT_PATH, redirect)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """An Installation's constructor arguments, as JSON (empty values left out)."""
    return {k: v for k, v in values.items() if v is not None and v != {}}
