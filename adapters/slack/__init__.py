"""Slack: @mentions, thread sessions, DMs, ``/imagine`` and result buttons.

``SlackAdapter`` is what ``imagebot serve`` runs; see :mod:`adapters.slack.adapter`.
"""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
