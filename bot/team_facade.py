"""The service façade's team-control half: what adapters ask about policies, quotas,
usage, costs and the audit log. :class:`bot.service.ConversationService` inherits it, so
adapters keep talking to the one service object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.admission import Admission
from bot.audit import AuditEntry
from bot.errors import ConfigError, ForbiddenError, OptionError
from bot.model import Author, IncomingMessage, ThreadKey
from bot.planning import PlanLimits
from bot.policy import Policy, Scope
from bot.refusals import who_to_ask
from bot.team import TeamControls, message_plan


class TeamFacade:
    """Policies, quotas, usage and audit, through the service."""

    team: TeamControls
    limits: PlanLimits

    async def admit(self, key: ThreadKey, message: IncomingMessage, *,
                    new_thread: bool = False) -> Admission:
        """Lets a turn in when the adapter accepts it: the policy is checked and its quota
        reserved now, so a refusal can be answered at once (privately, where the platform
        can). Pass the admission to ``handle``; one never handed on must be released.

        Args:
            key: the thread; for a thread not opened yet, its channel with an empty
                ``thread``.
            new_thread: the turn opens a new thread (no settings to read).

        Raises:
            PolicyError: the policy refuses the turn (it names the rule and who to ask).
            QuotaError: a daily quota or budget is used up (limit, use, reset time).
            ImagebotError: what the turn itself would refuse (options, prompt, files).
        """
        return await self.team.admit(key, message.author, message_plan(message),
                                     limits=self.limits, direct=message.direct,
                                     new_thread=new_thread)

    async def release(self, admission: Admission) -> None:
        """Gives back the quota of a turn that was let in but will not run."""
        await self.team.abandon(admission, None)

    # --- policy --------------------------------------------------------------------------

    async def policy_for(self, where: ThreadKey) -> Policy:
        """The policy in force where ``where`` is (a thread has its channel's)."""
        return await self.team.policy(where)

    async def is_admin(self, where: ThreadKey, author: Author, *,
                       workspace_admin: bool = False) -> bool:
        """Whether ``author`` administers imagebot here.

        Args:
            workspace_admin: the platform says the person administers the workspace (a
                Slack admin or owner, Discord's Manage Server).
        """
        policy = await self.team.policy(where)
        return policy.is_admin(author, workspace_admin=workspace_admin)

    async def change_policy(self, where: ThreadKey, rule: str, value: Any, *, by: Author,
                            workspace_admin: bool = False) -> Policy:
        """Sets one rule of the channel (or workspace) ``where`` is in, at run time; stored
        and audited. ``None`` puts the rule back to what the scopes above say.

        Raises:
            ForbiddenError: ``by`` is not an admin here.
            OptionError: an unknown rule or a value it cannot take.
        """
        scope = await self._admin_scope(where, by, workspace_admin)
        try:
            return await self.team.change(scope, {rule: value}, by=by, where=where)
        except ConfigError as exc:
            raise OptionError(exc.user_message) from None

    async def reset_policy(self, where: ThreadKey, *, by: Author,
                           workspace_admin: bool = False) -> Policy:
        """Drops the run-time changes of the scope ``where`` is in (audited)."""
        scope = await self._admin_scope(where, by, workspace_admin)
        return await self.team.change(scope, {}, by=by, where=where, reset=True)

    async def set_rules(self, scope_id: str, changes: Mapping[str, Any], *, by: Author
                        ) -> Policy:
        """Changes any scope's rules (the operator's command line; no admin check: whoever
        runs it can edit the configuration anyway). Stored and audited.

        Raises:
            OptionError: a bad scope id, rule or value.
        """
        try:
            return await self.team.change(Scope.parse(scope_id), changes, by=by)
        except ConfigError as exc:
            raise OptionError(exc.user_message) from None

    async def _admin_scope(self, where: ThreadKey, by: Author, workspace_admin: bool) -> Scope:
        policy = await self.team.policy(where)
        if not policy.is_admin(by, workspace_admin=workspace_admin):
            raise ForbiddenError(
                f"Only imagebot admins can change its settings here. {who_to_ask(policy)}.")
        return policy.scope

    # --- audit ---------------------------------------------------------------------------

    async def audit_log(self, *, since: float = 0.0, until: float | None = None,
                        actions: Sequence[str] = (), limit: int = 1000) -> list[AuditEntry]:
        """Policy changes, refusals, safety blocks and deletions, newest first."""
        return await self.team.audit.entries(since=since, until=until, actions=actions,
                                             limit=limit)
