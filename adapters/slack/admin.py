"""``/imagebot usage`` and ``/imagebot settings`` on Slack, answered privately (ephemeral),
and the settings menus (Block Kit static selects) admins change a channel's rules with.

Every change is checked again here against the person who picked it (never the message),
for the channel the menu was used in.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from adapters.slack.events import PLATFORM, SlashCommand, command_from_payload, is_admin
from adapters.slack.reporter import SLACK_FAILURES, slack_error
from bot.errors import ImagebotError
from bot.model import Author, ThreadKey
from bot.policy_view import Control, PolicyView, view_text
from bot.presentation import error_text
from bot.reports import usage_text

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

logger = logging.getLogger(__name__)

COMMAND = "/imagebot"
ACTION_PREFIX = "imagebot-policy-"
RESET = f"{ACTION_PREFIX}reset"
HELP = ("`/imagebot usage`: your images and cost today and this month, and what is left of "
        "your quotas (admins: the channel and the workspace too).\n"
        "`/imagebot settings`: this channel's imagebot rules (admins can change them).")
Block = dict[str, Any]


def bold(text: str) -> str:
    return f"*{text}*"


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _plain(label), "value": value}


def control_block(control: Control) -> Block:
    """One rule: its name, and a menu of its choices showing the channel's own value."""
    current = control.current_choice
    return {"type": "section", "block_id": f"{ACTION_PREFIX}{control.rule}",
            "text": {"type": "mrkdwn", "text": bold(control.label)},
            "accessory": {"type": "static_select", "action_id": f"{ACTION_PREFIX}{control.rule}",
                          "placeholder": _plain(control.label),
                          "options": [_option(c.label, c.value) for c in control.choices],
                          "initial_option": _option(current.label, current.value)}}


def settings_blocks(view: PolicyView) -> list[Block]:
    blocks: list[Block] = [{"type": "section",
                            "text": {"type": "mrkdwn", "text": view_text(view, bold=bold)}}]
    if view.admin:
        blocks.append({"type": "divider"})
        blocks.extend(control_block(c) for c in view.controls)
        blocks.append({"type": "actions", "block_id": RESET, "elements": [
            {"type": "button", "action_id": RESET, "value": "reset",
             "text": _plain("Back to the configured rules")}]})
    return blocks


def choice_of(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rule, picked value) of a settings menu pick, ``("reset", "")`` for the button."""
    actions = payload.get("actions") or ()
    if not actions:
        return None
    action = actions[0]
    action_id = str(action.get("action_id") or "")
    if action_id == RESET:
        return "reset", ""
    selected = action.get("selected_option") or {}
    if not action_id.startswith(ACTION_PREFIX) or "value" not in selected:
        return None
    return action_id.removeprefix(ACTION_PREFIX), str(selected["value"])


def where_of(payload: Mapping[str, Any]) -> ThreadKey:
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id") or ""
    team = (payload.get("team") or {}).get("id") or (payload.get("user") or {}).get(
        "team_id") or ""
    return ThreadKey(PLATFORM, str(team), str(channel), "")


class SlackAdmin:
    """The ``/imagebot`` command and the settings menus of one Slack adapter."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.service = adapter.service

    def register(self, app: AsyncApp) -> None:
        app.command(COMMAND)(self._on_command)
        app.action(re.compile(rf"^{ACTION_PREFIX}"))(self._on_choice)

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                          context: AsyncBoltContext) -> None:
        command = command_from_payload(body)
        what = command.text.strip().lower()
        if what not in ("usage", "settings"):
            await ack(text=HELP)
            return
        await ack()
        self.adapter.runner.spawn(self._answer(command, what, respond))

    async def _answer(self, command: SlashCommand, what: str, respond: AsyncRespond) -> None:
        where = ThreadKey(PLATFORM, command.team, command.channel, "")
        author = Author(command.user, command.user_name)
        admin = await self.workspace_admin(command.user)
        if what == "usage":
            summary = await self.service.usage_summary(where, author, workspace_admin=admin)
            await _private(respond, usage_text(summary, bold=bold))
            return
        view = await self.service.policy_view(where, author, workspace_admin=admin)
        await _private(respond, view_text(view, bold=bold), settings_blocks(view))

    async def _on_choice(self, ack: AsyncAck, body: dict[str, Any],
                         respond: AsyncRespond) -> None:
        await ack()
        choice = choice_of(body)
        if choice is not None:
            self.adapter.runner.spawn(self._choose(body, *choice, respond))

    async def _choose(self, body: Mapping[str, Any], rule: str, value: str,
                      respond: AsyncRespond) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        where = where_of(body)
        author = Author(user, str((body.get("user") or {}).get("name") or ""))
        admin = await self.workspace_admin(user)
        try:
            if rule == "reset":
                await self.service.reset_policy(where, by=author, workspace_admin=admin)
                view = await self.service.policy_view(where, author, workspace_admin=admin)
            else:
                view = await self.service.choose(where, rule, value, by=author,
                                                 workspace_admin=admin)
        except ImagebotError as exc:
            await _private(respond, error_text(exc.user_message))
            return
        await _private(respond, view_text(view, bold=bold), settings_blocks(view),
                       replace=True)

    async def workspace_admin(self, user: str) -> bool:
        """Whether Slack says the person is a workspace admin or owner."""
        try:
            info = await self.adapter.client.users_info(user=user)
        except SLACK_FAILURES as exc:
            logger.warning("users.info failed: %s", slack_error(exc))
            return False
        return is_admin(info.get("user") or {})


async def _private(respond: AsyncRespond, text: str, blocks: list[Block] | None = None, *,
                   replace: bool = False) -> None:
    """An ephemeral answer to the person who typed the command or picked from the menu."""
    with contextlib.suppress(*SLACK_FAILURES):
        await respond(text=text, blocks=blocks, response_type="ephemeral",
                      replace_original=replace)
