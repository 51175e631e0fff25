"""``python -m bench.drafting [N]``: what drafting costs and what containment catches (issue 22).

Two paths of the real activity (``MessagingActivities.draft_reminder``):

- **rules** (no model: the default): N reminders across segments × failure classes; model calls
  (must be 0) and the time per draft — the dunning hot path's draft, a local activity.
- **llm**: N reminders through ``AnthropicLlm`` against the Anthropic sandbox, whose scripted
  replies mix good drafts with the evaluation set's bad kinds (``tests/drafting/test_eval.py``:
  invented amount, discount, link, another customer, injected instruction, ...), one in three bad;
  the time per draft (the sandbox answers at once: this is RevBridge's own overhead — prompt,
  budget ledger, containment — plus one local HTTP round trip, not a model's latency), tokens per
  draft, bad drafts caught, good drafts wrongly refused.

- **recovery per variant** (``bench/drafting_recovery.py``): real dunning runs of both variants
  on the sandboxes, whose seeded payers answer what reaches their mailbox by documented,
  deterministic — synthetic — rules (``sandbox/payers.py``); recovery rate and time to recover
  per variant as ``revbridge report recovery`` computes them (``--no-recovery``: skip it).

Writes the "Drafting (issue 22)" section of bench/RESULTS.md (``--no-results``: print only).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from typing import Any

from activities.billing import CONTACTS
from activities.drafting import Drafter, ReminderDraftInput
from activities.messaging import MessagingActivities
from bench import drafting_recovery
from bench.report import RESULTS
from connectors.anthropic_llm import AnthropicLlm
from domain.containment import LlmBudget, LlmBudgets
from domain.drafts import DraftingPolicy, Variant
from sandbox.anthropic import AnthropicEmulator
from sandbox.framework import ServerThread
from tests.drafting.test_eval import (
    BAD,
    FAILURES,
    GOOD,
    HOSTILE,
    LANGUAGES,
    SEGMENTS,
    TONES,
    _reply,
)

N = 600
HEADING = "## Drafting (issue 22)"
KEY = "sk-ant-bench-key"


def _input(i: int) -> tuple[ReminderDraftInput, str]:
    segment, failure = list(itertools.product(SEGMENTS, FAILURES))[i % 20]
    language = LANGUAGES[i % 4]
    company, case = HOSTILE[i % len(HOSTILE)]
    return (
        ReminderDraftInput(
            invoice_id="INV-1042",
            company=company,
            amount_due=12_500,
            currency="USD",
            failure_class=failure,
            reminder=1,
            reminders=3,
            tone=TONES[segment],
            days_left=10,
            customer_id="cus_A1B2C3D4",
            segment=segment,
            language=language,
            failed_attempts=2,
            paid_before=14,
            account_name="Acme Ltd",
            case_texts=[case] if case else [],
        ),
        language,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int) -> dict[str, Any]:
    templates = MessagingActivities(None, None)  # type: ignore[arg-type]
    rules_ms = []
    for i in range(n):
        t = time.perf_counter()
        await templates.draft_reminder(_input(i)[0])
        rules_ms.append((time.perf_counter() - t) * 1000)
    em = AnthropicEmulator(api_key=KEY)
    kinds = [k for k in BAD if k != "echoed_case_text"]
    with ServerThread({em: 0}) as thread:
        llm = AnthropicLlm(api_key=KEY, base_url=thread.urls["anthropic"], max_tokens=600)
        huge = LlmBudget(max_calls=10**6, max_input_tokens=10**12, max_output_tokens=10**12)
        drafter = Drafter(llm, DraftingPolicy(), LlmBudgets(per_run=huge, per_day=huge))
        messaging = MessagingActivities(None, None, drafter)  # type: ignore[arg-type]
        CONTACTS.remember("INV-1042", "ap@acme.test")
        llm_ms, bad_n, caught, good_n, wrongly = [], 0, 0, 0, 0
        for i in range(n):
            input, language = _input(i)
            bad = i % 3 == 0
            kind = kinds[(i // 3) % len(kinds)]
            em.script([BAD[kind][0](language) if bad else _reply(language)])
            t = time.perf_counter()
            draft = await messaging.draft_reminder(input)
            llm_ms.append((time.perf_counter() - t) * 1000)
            if bad:
                bad_n += 1
                caught += draft.variant is Variant.TEMPLATE
            else:
                good_n += 1
                wrongly += draft.variant is not Variant.LLM
        usage = [a["usage"] for a in em.answers]
        llm.close()
    assert GOOD  # the good replies are the eval set's
    return {
        "n": n,
        "rules_calls": templates.drafter.calls,
        "rules_p50_ms": statistics.median(rules_ms),
        "rules_p99_ms": _pct(rules_ms, 0.99),
        "llm_calls": drafter.calls,
        "llm_p50_ms": statistics.median(llm_ms),
        "llm_p99_ms": _pct(llm_ms, 0.99),
        "input_tokens": statistics.fmean(u["input_tokens"] for u in usage),
        "output_tokens": statistics.fmean(u["output_tokens"] for u in usage),
        "bad": bad_n,
        "caught": caught,
        "good": good_n,
        "wrongly_refused": wrongly,
        "kinds": len(kinds),
    }


def section(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            HEADING,
            "",
            f"`python -m bench.drafting {r['n']}`: the reminder draft activity, {r['n']} drafts "
            "per path across 4 segments × 5 failure classes × en/de/fr/es × 4 hostile customer "
            "texts.",
            "",
            "| path | model calls | p50 per draft | p99 per draft |",
            "|---|---|---|---|",
            f"| rules (no key: the default) | {r['rules_calls']} | {r['rules_p50_ms']:.3f} ms | "
            f"{r['rules_p99_ms']:.3f} ms |",
            f"| llm (Anthropic sandbox, answers at once) | {r['llm_calls']} | "
            f"{r['llm_p50_ms']:.1f} ms | {r['llm_p99_ms']:.1f} ms |",
            "",
            f"Containment: {r['caught']} of {r['bad']} bad drafts caught ({r['kinds']} kinds "
            f"from the evaluation set) and replaced by the template; {r['wrongly_refused']} of "
            f"{r['good']} good drafts refused. Mean tokens per model draft: "
            f"{r['input_tokens']:.0f} in, {r['output_tokens']:.0f} out (the sandbox's estimate).",
            "The llm path's time is RevBridge's overhead plus a local round trip, not a model's "
            "latency.",
            "",
            *([drafting_recovery.section(r["recovery"]), ""] if r.get("recovery") else []),
        ]
    )


def main(n: int = N, write_results: bool = True, recovery: bool = True) -> int:
    r = asyncio.run(run(n))
    if recovery:
        r["recovery"] = asyncio.run(drafting_recovery.measure(copies=2))
    text = section(r)
    print(text)
    if write_results:
        body = RESULTS.read_text() if RESULTS.exists() else ""
        start = body.find(HEADING)
        if start >= 0:
            end = body.find("\n## ", start + len(HEADING))
            body = body[:start] + text + (body[end + 1 :] if end >= 0 else "")
        else:
            body = body.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(body)
    return 0 if r["caught"] == r["bad"] and r["rules_calls"] == 0 else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(
        main(
            int(args[0]) if args else N,
            "--no-results" not in sys.argv,
            "--no-recovery" not in sys.argv,
        )
    )
