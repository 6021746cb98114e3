"""The service façade's team-control half: what adapters ask about policies, quotas,
usage, costs and the audit log. :class:`bot.service.ConversationService` inherits it, so
adapters keep talking to the one service object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.admission import Admission
from bot.audit import AuditEntry, StoredRules
from bot.errors import ConfigError, ForbiddenError, ImagebotError, OptionError
from bot.ledger import GroupBy, Totals, UsageRow
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import PRO, ModelCaps, resolve_model
from bot.planning import PlanLimits
from bot.policy import Policy, Rules, Scope
from bot.policy_view import PolicyView, choice_value, policy_view
from bot.prices import PriceTable
from bot.refusals import who_to_ask
from bot.reports import UsageCharts, UsageSummary, usage_charts, usage_summary
from bot.team import TeamControls, message_plan


class TeamFacade:
    """Policies, quotas, usage and audit, through the service."""

    team: TeamControls
    limits: PlanLimits

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        """Tells the observers (metrics); the service defines it."""

    @property
    def prices(self) -> PriceTable:
        return self.team.prices

    def model_labels(self) -> dict[str, str]:
        """Model ids to the names people know them by."""
        models: Mapping[str, ModelCaps] = self.limits.models
        return {model: caps.label for model, caps in models.items()}

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
        try:
            return await self.team.admit(key, message.author, message_plan(message),
                                         limits=self.limits, direct=message.direct,
                                         new_thread=new_thread)
        except ImagebotError as exc:
            self._emit("error", {"kind": str(exc.kind), "key": key})  # metrics count it
            raise

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

    async def set_rules(self, scope_id: str, changes: Mapping[str, Any], *, by: Author,
                        reset: bool = False) -> Policy:
        """Changes any scope's rules (the operator's command line; no admin check: whoever
        runs it can edit the configuration anyway). Stored and audited; ``reset`` drops
        the scope's run-time changes first.

        Raises:
            OptionError: a bad scope id, rule or value.
        """
        try:
            return await self.team.change(Scope.parse(scope_id), changes, by=by, reset=reset)
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

    # --- reports -------------------------------------------------------------------------

    async def usage_summary(self, where: ThreadKey, author: Author, *,
                            workspace_admin: bool = False) -> UsageSummary:
        """``/imagebot usage``: the person's own today and this month and their quotas;
        for admins also the channel, the workspace, top people and cost by model."""
        policy = await self.team.policy(where)
        admin = policy.is_admin(author, workspace_admin=workspace_admin)
        return await usage_summary(self.team.ledger, policy, where, author, admin=admin,
                                   labels=self.model_labels())

    async def policy_view(self, where: ThreadKey, author: Author, *,
                          workspace_admin: bool = False) -> PolicyView:
        """``/imagebot settings``: the channel's rules in force, and menus for admins."""
        policy = await self.team.policy(where)
        admin = policy.is_admin(author, workspace_admin=workspace_admin)
        return policy_view(policy, admin=admin, labels=self.model_labels(),
                           configured_model=resolve_model(self.limits.defaults.model or PRO))

    async def choose(self, where: ThreadKey, rule: str, choice: str, *, by: Author,
                     workspace_admin: bool = False) -> PolicyView:
        """An admin's pick in a settings menu, applied to the channel (audited).

        Raises:
            ForbiddenError: ``by`` is not an admin here.
            OptionError: a rule without a menu, or a value it cannot take.
        """
        try:
            value = choice_value(rule, choice)
        except (KeyError, ValueError):
            raise OptionError(f"`{rule}` = `{choice}` cannot be set from chat.") from None
        await self.change_policy(where, rule, value, by=by, workspace_admin=workspace_admin)
        return await self.policy_view(where, by, workspace_admin=workspace_admin)

    async def usage_report(self, *, since: float, until: float | None = None,
                           by: GroupBy = "user", scope: str | None = None
                           ) -> tuple[list[UsageRow], Totals]:
        """Committed usage grouped ``by`` person, channel, workspace, platform, model or day,
        with the totals; ``scope`` an id (``slack/T1``) to report on part of it.

        Raises:
            OptionError: a bad scope id.
        """
        where = _scope(scope)
        ledger = self.team.ledger
        return (await ledger.grouped(by, since=since, until=until, scope=where),
                await ledger.totals(since=since, until=until, scope=where))

    async def usage_entries(self, *, since: float, until: float | None = None,
                            scope: str | None = None) -> list[dict[str, Any]]:
        """Every committed turn's ledger row (CSV exports)."""
        return await self.team.ledger.entries(since=since, until=until, scope=_scope(scope))

    async def usage_charts(self, *, since: float, scope: str | None = None) -> UsageCharts:
        """The web usage page's data."""
        return await usage_charts(self.team.ledger, since=since, scope=_scope(scope))

    async def policy_overview(self) -> list[tuple[Scope, Rules, StoredRules | None]]:
        """Every scope with rules: the configured ones and the run-time changes over them."""
        stored = await self.team.audit.stored_rules()
        config = self.team.config
        ids = ["*", *sorted(set(config.scopes) | set(stored))]
        scopes = [Scope.parse(i) for i in ids]
        return [(s, await self._rules_in_force(s), stored.get(s.id)) for s in scopes]

    async def _rules_in_force(self, scope: Scope) -> Rules:
        policy = await self.team.policy(ThreadKey(scope.platform, scope.workspace,
                                                  scope.channel, ""))
        return policy.layers[-1].rules


def _scope(scope_id: str | None) -> Scope | None:
    if not scope_id:
        return None
    try:
        return Scope.parse(scope_id)
    except ConfigError as exc:
        raise OptionError(exc.user_message) from None
