"""Team controls in the core: the policy in force in a place (the configured rules with the
changes admins made at run time over them), letting turns in and reserving their quota,
settling their cost or refunding it, run-time policy changes, and the audit trail.

The service calls :meth:`TeamControls.admit` when it accepts a turn, :meth:`settle` with
the committed reply and :meth:`abandon` when the turn fails or is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bot.admission import Admission, TurnKind, check_access, check_batch, enforce, plan_limits
from bot.audit import (
    REFUSED_POLICY,
    REFUSED_QUOTA,
    SAFETY_BLOCK,
    THREAD_DELETE,
    TURN_DELETE,
    AuditLog,
    StoredRules,
)
from bot.config import Settings
from bot.errors import ConfigError, ErrorKind, ImagebotError, PolicyError, QuotaError
from bot.ledger import Entry, Ledger, Refuse
from bot.model import Author, IncomingMessage, Reply, ThreadKey, TurnView
from bot.options import OptionInput
from bot.planning import PlanLimits, TurnPlan, plan_turn
from bot.policy import Layer, Policy, Quota, Rules, Scope
from bot.refusals import quota_full
from bot.store_api import Store

logger = logging.getLogger(__name__)

MakePlan = Callable[[OptionInput, PlanLimits], TurnPlan]
#: Failures the audit log keeps: Gemini refused on safety grounds.
SAFETY_KINDS = frozenset({ErrorKind.SAFETY, ErrorKind.BLOCKED})
QUOTA_RULES = {"user_images": "daily_images_per_user",
               "channel_images": "daily_images_per_channel", "budget": "daily_budget_usd"}


def message_plan(message: IncomingMessage) -> MakePlan:
    """How a message's turn is planned, under a thread's settings and the plan limits."""

    def make(sticky: OptionInput, limits: PlanLimits) -> TurnPlan:
        return plan_turn(message.text, message.attachments, ui=message.options, sticky=sticky,
                         limits=limits)

    return make


def place(scope: Scope) -> ThreadKey:
    """A scope as a place (no thread), for audit entries."""
    return ThreadKey(scope.platform, scope.workspace, scope.channel, "")


class TeamControls:
    """Policies, quotas, costs and the audit log, on the store's database."""

    def __init__(self, store: Store, settings: Settings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = settings.policy
        self.prices = settings.prices
        self.ledger = Ledger(store, timezone=self.config.timezone, clock=clock)
        self.audit = AuditLog(store, clock=clock)
        self.clock = clock
        self._open: dict[str, Admission] = {}
        self._recovered = False
        self._recovering = asyncio.Lock()

    # --- the policy in force -------------------------------------------------------------

    async def policy(self, key: ThreadKey) -> Policy:
        """The policy of the place ``key`` is in (a thread has its channel's)."""
        scope = Scope.of(key)
        chain = scope.chain()
        stored = await self.audit.stored_rules([s.id for s in chain])
        layers = tuple(Layer(s, self._rules(s, stored.get(s.id))) for s in chain)
        return Policy(scope, layers, self.config.timezone)

    def _rules(self, scope: Scope, stored: StoredRules | None) -> Rules:
        configured = self.config.rules(scope)
        if stored is None:
            return configured
        merged = {**configured.given(), **stored.rules}
        try:
            return Rules.from_dict({k: v for k, v in merged.items() if v is not None},
                                   where=f"run-time policy of {scope.id}")
        except ConfigError as exc:  # a later configuration made an old change invalid
            logger.warning("ignoring the run-time policy of %s: %s", scope.id, exc.user_message)
            return configured

    # --- turns ---------------------------------------------------------------------------

    async def admit(self, key: ThreadKey, author: Author, make_plan: MakePlan, *,
                    limits: PlanLimits, direct: bool = False, kind: TurnKind = "turn",
                    new_thread: bool = False) -> Admission:
        """Lets a turn in: checks who asks and its options, then reserves its quota.

        Raises:
            PolicyError: the policy refuses it (audited).
            QuotaError: a quota has no room (audited).
            ImagebotError: what planning the turn refuses (a bad option, an empty prompt).
        """
        await self._recover_once()
        policy = await self.policy(key)
        try:
            check_access(policy, author, direct=direct)
            sticky = OptionInput() if new_thread else await self.store.settings(key)
            own = plan_limits(policy, limits)
            plan = enforce(policy, make_plan(sticky, own), sticky, own)
            options = plan.options
            count = max(1, options.count)  # every candidate counts and costs
            admission = Admission(
                id=uuid.uuid4().hex, key=key, author=author, policy=policy, limits=own,
                estimate=count * self.prices.estimate(options.model, options.size,
                                                      reference_images=len(plan.attachments)),
                kind=kind, direct=direct)
            entry = Entry(id=admission.id, kind=kind, key=key, user_id=author.id,
                          user_name=author.name, model=options.model,
                          size=options.size or "", estimate=admission.estimate,
                          reference_images=len(plan.attachments), images=count)
            await self.ledger.reserve(entry, policy.quotas(author.id),
                                      self._refuse(policy, admission.estimate))
        except PolicyError as exc:
            await self._refused(exc, author, key)
            raise
        self._open[admission.id] = admission
        return admission

    async def admit_batch(self, key: ThreadKey, author: Author) -> None:
        """Checks who may submit a batch here and whether the policy allows Batch at all.

        Raises:
            PolicyError: refused (audited), before anything is stored or sent.
        """
        policy = await self.policy(key)
        try:
            check_access(policy, author, direct=False)
            check_batch(policy)
        except PolicyError as exc:
            await self._refused(exc, author, key)
            raise

    async def batch_charged(self, job: Any, rows: list[Any],
                            line_options: Mapping[int, Mapping[str, Any]]) -> None:
        """Enters a finished batch's lines in the cost ledger, at batch price (they were
        never reserved: Gemini runs a batch when it runs it, within 24 hours)."""
        for row in rows:
            line = int(str(row.turn_id).rsplit(":", 1)[-1])
            size = str((line_options.get(line) or {}).get("size") or "") or None
            cost = self.prices.cost(job.model, size, images=row.images, usage=row.usage,
                                    batch=True).total
            entry = Entry(id=row.turn_id, kind="batch", key=job.key, user_id=job.author.id,
                          user_name=job.author.name, model=job.model, size=size or "",
                          estimate=cost, images=row.images, batch=True)
            await self.ledger.reserve(entry, (), self._refuse_nothing)
            await self.ledger.settle(row.turn_id, key=job.key, model=job.model,
                                     size=size or "", images=row.images, usage=row.usage,
                                     cost=cost)

    @staticmethod
    def _refuse_nothing(quota: Quota, used: float, seconds_left: float) -> Exception:
        raise AssertionError("a batch line is charged, never refused")

    def _refuse(self, policy: Policy, estimate: float) -> Refuse:
        def refuse(quota: Quota, used: float, seconds_left: float) -> Exception:
            return QuotaError(quota_full(quota, used, estimate, seconds_left, policy),
                              rule=QUOTA_RULES[quota.kind])

        return refuse

    async def _refused(self, error: PolicyError, author: Author, key: ThreadKey) -> None:
        action = REFUSED_QUOTA if isinstance(error, QuotaError) else REFUSED_POLICY
        await self.audit.record(action, actor=author, where=key,
                                summary=f"refused by {error.rule or 'policy'}",
                                detail={"rule": error.rule, "message": error.user_message})

    async def settle(self, admission: Admission, reply: Reply) -> float:
        """Commits the turn's cost; returns it in US dollars."""
        options = reply.options
        model = options.model if options else reply.model
        size = options.size if options else None
        # With candidates, every image made counts, not just the one the thread goes on with.
        images = sum(len(c.images) for c in reply.candidates) or len(reply.images)
        cost = self.prices.cost(model, size, images=images, usage=reply.usage).total
        await self.ledger.settle(admission.id, key=reply.thread, model=model, size=size or "",
                                 images=images, usage=reply.usage, cost=cost)
        self._open.pop(admission.id, None)
        return cost

    async def abandon(self, admission: Admission | None, error: BaseException | None) -> None:
        """Refunds a turn that failed or was cancelled, and audits a safety block or a
        refusal found when it was about to run."""
        if admission is None:
            return
        await self.ledger.refund(admission.id)
        self._open.pop(admission.id, None)
        if isinstance(error, PolicyError):
            await self._refused(error, admission.author, admission.key)
        elif isinstance(error, ImagebotError) and error.kind in SAFETY_KINDS:
            await self.audit.record(SAFETY_BLOCK, actor=admission.author, where=admission.key,
                                    summary=f"Gemini refused: {error.kind}",
                                    detail={"kind": str(error.kind),
                                            "message": error.user_message})

    async def release_all(self) -> None:
        """Refunds every turn let in that never ran (the process is stopping)."""
        for admission in list(self._open.values()):
            await self.abandon(admission, None)

    async def _recover_once(self) -> None:
        """Settles or refunds reservations a stopped process left behind (once)."""
        if self._recovered:
            return
        async with self._recovering:
            if self._recovered:
                return
            for stale in await self.ledger.stale():
                if stale.usage is None:
                    await self.ledger.refund(stale.id)
                    continue
                cost = self.prices.cost(stale.model, stale.size or None, images=stale.images,
                                        usage=stale.usage, batch=stale.batch).total
                await self.ledger.settle(stale.id, key=None, model=stale.model,
                                         size=stale.size, images=stale.images,
                                         usage=stale.usage, cost=cost)
            self._recovered = True

    # --- audit of deletions --------------------------------------------------------------

    async def deleted(self, turn: TurnView, by: Author | None) -> None:
        await self.audit.record(TURN_DELETE, actor=by or turn.author, where=turn.thread,
                                summary=f"deleted a result of {turn.author.name or turn.author.id}",
                                detail={"turn": turn.id, "author": turn.author.id,
                                        "prompt": turn.prompt[:200]})

    async def thread_deleted(self, key: ThreadKey, by: Author | None) -> None:
        await self.audit.record(THREAD_DELETE, actor=by or Author("unknown"), where=key,
                                summary="deleted a thread", detail={"thread": str(key)})

    # --- run-time policy changes ---------------------------------------------------------

    async def change(self, scope: Scope, changes: Mapping[str, Any], *, by: Author,
                     where: ThreadKey | None = None, reset: bool = False) -> Policy:
        """Stores rule changes for ``scope`` (``None`` values: back to inherited), audited.

        Raises:
            ConfigError: an unknown rule or a value it cannot take.
        """
        normalized = {name: None if value is None else _plain(Rules.from_dict(
            {name: value}, where=f"policy of {scope.id}").given()[name])
                      for name, value in changes.items()}
        stored = (await self.audit.stored_rules([scope.id])).get(scope.id)
        before = dict(stored.rules) if stored else {}
        after = {**({} if reset else before), **normalized}
        configured = self.config.rules(scope).given()
        what = ", ".join(["reset to the configured rules"] * reset + [
            f"{k} = {_shown(v)}" for k, v in normalized.items()])
        await self.audit.save_rules(
            scope, after, by=by, where=where or place(scope),
            summary=f"{scope.id}: {what}",
            detail={"scope": scope.id, "changes": normalized, "before": before,
                    "after": after, "configured": configured, "reset": reset})
        return await self.policy(place(scope))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    if value is None:
        return "inherited"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
