"""``imagebot usage``, ``imagebot audit`` and ``imagebot policy``: the team controls on the
command line, read from (and, for ``policy --set``, written to) imagebot's database.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.ledger import GROUPS
from bot.model import Author
from bot.policy import RULE_FIELDS
from bot.refusals import money
from bot.reports import since_of
from bot.runtime import Core

COMMANDS = ("usage", "audit", "policy")
HEADINGS = {"user": "person", "channel": "channel", "workspace": "workspace",
            "platform": "platform", "model": "model", "day": "day"}


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the three commands to ``imagebot``'s parser."""
    usage = sub.add_parser("usage", help="images and costs from the ledger")
    usage.add_argument("--since", default="30d",
                       help="30d, 12h, 2w, today, month or a date like 2026-11-01 "
                            "(default: 30d)")
    usage.add_argument("--by", choices=list(GROUPS), default="user",
                       help="group by (default: user)")
    usage.add_argument("--scope", help="only this scope, e.g. slack/T0123 or "
                                       "discord/<guild>/<channel>")
    usage.add_argument("--csv", action="store_true", help="CSV on standard output")

    audit = sub.add_parser("audit", help="policy changes, refusals, safety blocks, deletions")
    audit.add_argument("--since", default="7d", help="as for usage (default: 7d)")
    audit.add_argument("--action", action="append", default=[],
                       help="only these actions (repeatable): refused.policy, refused.quota, "
                            "blocked.safety, policy.change, turn.delete, thread.delete")
    audit.add_argument("--limit", type=int, default=1000)
    audit.add_argument("--csv", action="store_true", help="CSV on standard output")

    policy = sub.add_parser("policy", help="show the policy of every scope, or change one")
    policy.add_argument("--scope", help="* (installation), platform/workspace or "
                                        "platform/workspace/channel")
    policy.add_argument("--set", action="append", default=[], metavar="RULE=VALUE",
                        help="set a rule at run time (repeatable); e.g. max_size=2K, "
                             "allowed_models=flash,pro, daily_budget_usd=10, search=false")
    policy.add_argument("--unset", action="append", default=[], metavar="RULE",
                        help="back to what the scopes above say (repeatable)")
    policy.add_argument("--reset", action="store_true",
                        help="drop every run-time change of the scope")


async def run(args: argparse.Namespace, core: Core, out: TextIO | None = None) -> int:
    """Runs one of :data:`COMMANDS`; returns the exit code.

    Raises:
        ImagebotError: a bad scope or rule (printed as one line by the caller).
        ValueError: a time ``--since`` does not understand.
    """
    out = out or sys.stdout
    if args.command == "usage":
        return await usage(core, args, out)
    if args.command == "audit":
        return await audit(core, args, out)
    return await policy(core, args, out)


async def usage(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    zone = core.settings.policy.timezone
    since = since_of(args.since, time.time(), zone)
    rows, totals = await core.service.usage_report(since=since, by=args.by, scope=args.scope)
    labels = core.service.model_labels()
    if args.csv:
        writer = csv.writer(out)
        writer.writerow([args.by, "label", "turns", "images", "cost_usd"])
        for row in rows:
            writer.writerow([row.key, labels.get(row.key, row.label), row.turns, row.images,
                             f"{row.cost:.6f}"])
        return 0
    start = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M")
    print(f"imagebot usage since {start} UTC, by {args.by}"
          + (f", in {args.scope}" if args.scope else ""), file=out)
    table = [(HEADINGS[args.by], "turns", "images", "cost")]
    for row in rows:
        name = labels.get(row.key, row.label)
        if args.by == "user" and row.label != row.key:
            name = f"{row.label} ({row.key})"
        table.append((name, str(row.turns), str(row.images), money(row.cost)))
    table.append(("total", str(totals.turns), str(totals.images), money(totals.cost)))
    _print_table(table, out)
    return 0


async def audit(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    since = since_of(args.since, time.time(), core.settings.policy.timezone)
    entries = await core.service.audit_log(since=since, actions=args.action, limit=args.limit)
    writer = csv.writer(out) if args.csv else None
    if writer:
        writer.writerow(["at", "action", "actor", "actor_name", "where", "summary", "detail"])
    elif not entries:
        print("nothing recorded in that time", file=out)
    for entry in reversed(entries):
        when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        where = "/".join(p for p in (entry.where.platform, entry.where.workspace,
                                     entry.where.channel, entry.where.thread) if p) or "-"
        who = f"{entry.actor_name} ({entry.actor})" if entry.actor_name else entry.actor
        if writer:
            writer.writerow([when, entry.action, entry.actor, entry.actor_name, where,
                             entry.summary, json.dumps(dict(entry.detail), sort_keys=True)])
        else:
            detail = entry.detail.get("message") or entry.summary
            print(f"{when}  {entry.action:<15} {who}  {where}  {detail}", file=out)
    return 0


async def policy(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    changes = dict(_assignment(a) for a in args.set)
    changes.update({rule: None for rule in args.unset})
    if changes or args.reset:
        if not args.scope:
            print("imagebot: --set, --unset and --reset need --scope", file=sys.stderr)
            return 2
        by = Author(f"cli:{getpass.getuser()}", getpass.getuser())
        if args.reset:
            await core.service.set_rules(args.scope, {}, by=by, reset=True)
        if changes:
            await core.service.set_rules(args.scope, changes, by=by)
    for scope, rules, stored in await core.service.policy_overview():
        if args.scope and scope.id != args.scope.strip():
            continue
        print(f"[{scope.id}]" + (" the whole installation" if scope.kind == "installation"
                                  else ""), file=out)
        for name, value in rules.given().items():
            print(f"  {name} = {json.dumps(value)}", file=out)
        if stored:
            when = datetime.fromtimestamp(stored.updated_at, UTC).strftime(
                "%Y-%m-%d %H:%M")
            print(f"  (run-time changes by {stored.updated_by} at {when} UTC: "
                  f"{json.dumps(dict(stored.rules), sort_keys=True)})", file=out)
    return 0


def _assignment(text: str) -> tuple[str, Any]:
    rule, sep, raw = text.partition("=")
    rule = rule.strip()
    if not sep or rule not in RULE_FIELDS:
        raise ValueError(f"`{text}` is not RULE=VALUE with a known rule: "
                         f"{', '.join(RULE_FIELDS)}")
    try:
        return rule, json.loads(raw)
    except ValueError:
        return rule, raw.strip()


def _print_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                       strict=True)]
        print("  ".join(cells).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
