"""Realistic voice-agent session payloads of ~3 KB, varied like real sessions, cheap to build."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson

_TOOL_NAMES = ("lookup_account", "get_pricing", "check_integration", "schedule_demo",
               "send_followup_email", "create_crm_note", "search_knowledge_base", "transfer_call")
_VOCABULARY = (
    "caller team contract routing approval audit trail template region salesforce hubspot "
    "pricing business plan demo sales ops lead renewal quarter budget integration guide "
    "follow-up email bulk send signature workflow carrier vendor onboarding legal review "
    "compliance export dashboard seats annual monthly discount trial migration docusign "
    "adobe sign google drive sharepoint api webhook volume envelopes reminders mobile "
    "notary payment forms fields branding sso okta azure permissions admin reporting "
    "asked wants mentioned prefers confirmed declined requested scheduled escalated "
    "frustrated happy unsure comparing evaluating currently using planning needs"
)
_NAMES = ("jordan alex sam taylor morgan casey riley jamie avery quinn drew blake reese "
          "cameron dana emerson finley harper kendall logan")
_SURNAMES = ("alvarez chen patel okafor novak rossi schmidt tanaka dubois kowalski "
             "silva murphy nguyen larsen haddad")
_WORDS, _FIRST, _LAST = _VOCABULARY.split(), _NAMES.split(), _SURNAMES.split()
_DOMAINS = ("example-logistics.com", "acme-corp.example", "northwind.example", "globex.example",
            "initech.example", "umbrella-health.example", "stark-ind.example", "wayne-ent.example")
_TIERS = ("self_serve", "sales_assisted", "enterprise", "unqualified")
_TOOLS = ("DocuSign", "Adobe Sign", "HelloSign", "paper", "none", "PandaDoc trial")


def _note(rng: random.Random) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(70, 100))).capitalize() + "."


def _tool_calls(rng: random.Random) -> list[dict[str, Any]]:
    calls = []
    for i in range(rng.randint(6, 9)):
        name = rng.choice(_TOOL_NAMES)
        calls.append({
            "name": name, "call_id": f"call_{rng.getrandbits(40):010x}",
            "started_at": f"2025-10-29T14:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
            "duration_ms": rng.randint(40, 2400), "status": "ok" if rng.random() > 0.1 else "error",
            "arguments": {"query": " ".join(rng.choices(_WORDS, k=4)), "limit": rng.randint(1, 9)},
            "attempt": i + 1})
    return calls


def _signals(rng: random.Random) -> dict[str, Any]:
    return {
        "team_size": rng.randint(1, 400), "monthly_volume": rng.randint(0, 5000),
        "current_tool": rng.choice(_TOOLS), "decision_maker": rng.random() > 0.5,
        "integrations": rng.sample(["salesforce", "hubspot", "google_drive", "sharepoint",
                                    "slack", "zapier"], rng.randint(0, 3)),
        "pain_points": [" ".join(rng.choices(_WORDS, k=5)) for _ in range(rng.randint(1, 3))],
        "qualification_tier": rng.choice(_TIERS),
    }


def _metrics(rng: random.Random) -> dict[str, Any]:
    return {
        "turns": rng.randint(4, 60), "interruptions": rng.randint(0, 9),
        "llm": {"model": "gpt-4o-mini", "prompt_tokens": rng.randint(2000, 40000),
                "completion_tokens": rng.randint(200, 4000),
                "ttft_ms_p50": round(rng.uniform(200, 900), 1),
                "ttft_ms_p95": round(rng.uniform(600, 2500), 1)},
        "stt": {"provider": "deepgram", "audio_seconds": round(rng.uniform(20, 900), 1),
                "latency_ms_p50": round(rng.uniform(90, 400), 1)},
        "tts": {"provider": "cartesia", "characters": rng.randint(300, 20000),
                "ttfb_ms_p50": round(rng.uniform(90, 500), 1)},
        "end_to_end_latency_ms_p50": round(rng.uniform(500, 1500), 1),
    }


def _costs(rng: random.Random) -> dict[str, Any]:
    parts = {k: round(rng.uniform(0.001, 0.08), 4) for k in ("llm_usd", "stt_usd", "tts_usd",
                                                            "telephony_usd")}
    return {**parts, "total_usd": round(sum(parts.values()), 4), "currency": "USD"}


def _start_end(rng: random.Random) -> tuple[str, str]:
    h, m, s = rng.randint(0, 23), rng.randint(0, 52), rng.randint(0, 59)
    return (f"2025-10-29T{h:02d}:{m:02d}:{s:02d}.{rng.randint(0, 999999):06d}+00:00",
            f"2025-10-29T{h:02d}:{m + 7:02d}:{s:02d}.{rng.randint(0, 999999):06d}+00:00")


class Payloads:
    """Realistic, varied voice-agent session summaries of ~3 KB as compact JSON.

    Each payload has a unique ``session_id`` and email; its other parts are drawn from
    pools built once (thousands of distinct notes, tool-call lists, signals), so building
    one costs about a microsecond and gzip sees data about as repetitive as real sessions,
    not one record repeated.
    """

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self._run = uuid.uuid4().hex[:8]
        self._notes = [_note(rng) for _ in range(4096)]
        self._tools = [_tool_calls(rng) for _ in range(1024)]
        self._signals = [_signals(rng) for _ in range(512)]
        self._metrics = [_metrics(rng) for _ in range(512)]
        self._costs = [_costs(rng) for _ in range(512)]
        self._times = [_start_end(rng) for _ in range(1024)]

    def __call__(self, index: int) -> dict[str, Any]:
        """The payload of session ``index`` (deterministic for a given seed and index)."""
        h = (index * 2654435761) & 0xFFFFFFFF
        start, end = self._times[h & 1023]
        return {
            "session_id": f"rm_{self._run}_{index:08d}",
            "user_email": f"{_FIRST[h % 20]}.{_LAST[(h >> 5) % 15]}{index % 1000}"
                          f"@{_DOMAINS[(h >> 9) % 8]}",
            "start_time": start,
            "end_time": end,
            "duration_seconds": (h % 90000) / 100,
            "discovered_signals": self._signals[(h >> 3) & 511],
            "tool_calls": self._tools[(h >> 7) & 1023],
            "metrics_summary": self._metrics[(h >> 11) & 511],
            "cost_summary": self._costs[(h >> 13) & 511],
            "conversation_notes": self._notes[(h >> 2) & 4095],
        }

    def mean_size(self, sample: int = 2000) -> float:
        """Mean bytes of a payload as compact JSON (what the handler serialises)."""
        return sum(len(orjson.dumps(self(i))) for i in range(sample)) / sample
