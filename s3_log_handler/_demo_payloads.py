"""Realistic, reproducible voice-agent session payloads for the demo (the plan's shape)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

#: Seed of the demo's generator: the same sessions on every run.
SEED = 20251029
#: About one session in twenty ends before the agent has a room id.
MISSING_ID_RATE = 0.05

_TOOLS = ("lookup_pricing", "check_integration", "schedule_demo", "send_follow_up",
          "search_docs", "create_trial_account")
_TIERS = ("unqualified", "nurture", "qualified", "enterprise")
_INDUSTRIES = ("real estate", "legal", "healthcare", "saas", "insurance", "education")
_FIRST = ("ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hiro", "ines", "jon")
_DOMAINS = ("example.com", "example.org", "example.net")
_NOTES = (
    "Asked about bulk sending and templates.",
    "Evaluating against their current e-signature tool; price sensitive.",
    "Needs Salesforce integration before the end of the quarter.",
    "Small team, mostly curious about the free plan.",
    "Wants a demo for the operations lead next week.",
    "Compliance questions about audit trails and data residency.",
)


def make_sessions(count: int, *, seed: int = SEED, now: datetime | None = None,
                  id_prefix: str = "rm_") -> list[dict[str, Any]]:
    """``count`` session payloads, identical for the same ``seed``, ``now`` and ``id_prefix``.

    Each has the plan's fields: session_id (``id_prefix`` + 12 hex digits; missing in ~5%),
    user_email, start/end time, duration_seconds, discovered_signals (team_size,
    monthly_volume, qualification_tier, ...), tool_calls, metrics_summary, cost_summary,
    conversation_notes.
    """
    rng = random.Random(seed)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    return [_session(rng, index, moment, id_prefix) for index in range(count)]


def _session(rng: random.Random, index: int, now: datetime, id_prefix: str) -> dict[str, Any]:
    start = now - timedelta(seconds=rng.randint(60, 6 * 3600))
    duration = round(rng.uniform(25.0, 900.0), 1)
    team_size = rng.choice((1, 1, 2, 3, 4, 5, 8, 12, 25, 60))
    monthly_volume = rng.choice((5, 10, 20, 40, 80, 100, 150, 400, 1000))
    qualified = team_size >= 5 or monthly_volume >= 100
    tier = rng.choice(_TIERS[2:]) if qualified else rng.choice(_TIERS[:2])
    tools = [
        {
            "tool": rng.choice(_TOOLS),
            "timestamp": _iso(start + timedelta(seconds=rng.uniform(5, duration))),
            "duration_ms": rng.randint(40, 2500),
            "success": rng.random() > 0.05,
        }
        for _ in range(rng.randint(0, 6))
    ]
    llm_tokens = rng.randint(800, 30_000)
    tts_chars = rng.randint(300, 12_000)
    payload: dict[str, Any] = {
        "session_id": f"{id_prefix}{rng.getrandbits(48):012x}",
        "user_email": f"{rng.choice(_FIRST)}.{index}@{rng.choice(_DOMAINS)}",
        "start_time": _iso(start),
        "end_time": _iso(start + timedelta(seconds=duration)),
        "duration_seconds": duration,
        "discovered_signals": {
            "team_size": team_size,
            "monthly_volume": monthly_volume,
            "qualification_tier": tier,
            "industry": rng.choice(_INDUSTRIES),
            "current_tool": rng.choice(("none", "docusign", "adobe sign", "paper")),
            "integrations": rng.sample(("salesforce", "hubspot", "slack", "zapier"),
                                       rng.randint(0, 2)),
            "decision_maker": rng.random() < 0.4,
        },
        "tool_calls": tools,
        "metrics_summary": {
            "llm_prompt_tokens": llm_tokens,
            "llm_completion_tokens": rng.randint(100, llm_tokens // 4),
            "tts_characters": tts_chars,
            "stt_audio_seconds": round(duration * rng.uniform(0.4, 0.6), 1),
            "avg_end_of_utterance_delay_ms": rng.randint(250, 1400),
            "interruptions": rng.randint(0, 9),
        },
        "cost_summary": {
            "llm_usd": round(llm_tokens * 0.0000025, 5),
            "tts_usd": round(tts_chars * 0.000015, 5),
            "stt_usd": round(duration / 60 * 0.0043, 5),
        },
        "conversation_notes": rng.choice(_NOTES),
    }
    payload["cost_summary"]["total_usd"] = round(sum(payload["cost_summary"].values()), 5)
    if rng.random() < MISSING_ID_RATE:
        del payload["session_id"]
    return payload


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_qualified(payload: dict[str, Any]) -> bool:
    """The plan's hot-lead rule: team_size >= 5 or monthly_volume >= 100."""
    signals = payload.get("discovered_signals") or {}
    return bool(signals.get("team_size", 0) >= 5 or signals.get("monthly_volume", 0) >= 100)
