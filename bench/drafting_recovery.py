"""Recovery per draft variant, measured on the sandboxes from real dunning runs (issue 22).

``python -m bench.drafting_recovery [COPIES]`` (also part of ``python -m bench.drafting``):

- Two deployments side by side on Temporal's time-skipping test server (days pass in seconds):
  **template** (no model: the reviewed templates) and **llm** (``policies/drafting.yaml`` lists
  ``reminder``; the real ``AnthropicLlm`` client against the Anthropic sandbox). Each is a real
  worker (``workers.main.build_worker``) on Chargebee × Salesforce sandboxes, mailing through the
  SMTP mailbox sandbox.
- The same seeded payers for both (``sandbox/payers.py``: a link payer, a prompt payer, a slow
  payer, a payer who never pays; SMB, expired cards), each with its own invoice.
- The Anthropic sandbox stands in for the model as a deterministic drafter
  (:class:`DraftingModel`): it writes each reminder from the prompt's trusted facts, with the
  policy's hosted payment link, and makes one scripted mistake — the first draft for the
  ``*2`` copies invents an amount, which containment refuses (the template goes out).
- The runs are walked step by step; after each step every payer reads its mailbox and, by its
  rule, pays in billing (the Chargebee sandbox) some hours later; the paid event reaches the run
  as the webhook route would deliver it (the test delivers the canonical ``InvoicePaid``).
- Results come from Temporal, as ``revbridge report recovery`` computes them: each run's
  outcome, the variants in its memo, its start and close (``cli.report.rows_of``).

SYNTHETIC: the numbers follow from the payer rules and the sandbox model's drafts (here: the
template carries no payment link and the model's draft does, so the link payer recovers only on
the llm variant). They show the measuring pipeline end to end; they are not evidence about real
customers. On a live deployment ``revbridge report recovery`` reads the same fields from real runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.policy import DEFAULT_POLICY_DIR
from cli.report import render, rows_of, summarize
from connectors.anthropic_llm import AnthropicLlm
from connectors.email import SmtpMailer
from connectors.reasoner import LlmReasoner
from domain import temporal as names
from domain.dunning import DunningStatus
from domain.models import InvoicePaid
from sandbox.anthropic import AnthropicEmulator
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator
from sandbox.payers import Payer, population
from sandbox.salesforce import SalesforceEmulator
from workers.main import build_worker

#: the billing platform's hosted payment page, as the drafting policy allow-lists it (synthetic)
PAY_LINK = "https://pay.sandbox-billing.test/invoices/"
KEY = "sk-ant-recovery-bench"
UNUSED = "http://127.0.0.1:9"
WAITING = ("waiting for payment", "paused by an open support case", "closed")

_BODIES = {
    "en": (
        "Payment for invoice {inv}: pay in one click",
        "Hello,\n\nWe could not collect {amount} for invoice {inv}: the card on file has "
        "expired. You can pay it in one click on our secure payment page: {link}{inv}\n\n"
        "Thank you for being with us.",
    ),
    "fr": (
        "Facture {inv} : payer en un clic",
        "Bonjour,\n\nNous n'avons pas pu encaisser {amount} pour la facture {inv} : la carte "
        "enregistrée a expiré. Vous pouvez la régler en un clic sur notre page de paiement "
        "sécurisée : {link}{inv}\n\nMerci de votre confiance.",
    ),
    "de": (
        "Rechnung {inv}: mit einem Klick bezahlen",
        "Guten Tag,\n\nwir konnten {amount} für die Rechnung {inv} nicht einziehen: die "
        "hinterlegte Karte ist abgelaufen. Sie können mit einem Klick auf unserer sicheren "
        "Zahlungsseite bezahlen: {link}{inv}\n\nVielen Dank.",
    ),
    "es": (
        "Factura {inv}: pague con un clic",
        "Hola:\n\nNo pudimos cobrar {amount} por la factura {inv}: la tarjeta registrada ha "
        "caducado. Puede pagarla con un clic en nuestra página de pago segura: {link}{inv}\n\n"
        "Gracias por estar con nosotros.",
    ),
}


class DraftingModel(AnthropicEmulator):
    """The Anthropic sandbox as a deterministic drafting model: a reminder written from the
    prompt's trusted facts (invoice, amount, language, the first allow-listed payment link). For
    invoices containing one of ``slips``, its first draft invents an amount (refused by
    containment: the template goes out for that reminder). Any other request gets the
    sandbox's default answer."""

    def __init__(self, *args: Any, slips: tuple[str, ...] = (), **kw: Any) -> None:
        self.slips = slips
        super().__init__(*args, **kw)

    def _default_reply(self, req: Any, tool: dict[str, Any] | None) -> dict[str, Any]:  # type: ignore[override]
        content = req.messages[0]["content"] if req.messages else ""
        if isinstance(content, list):
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        if tool is None or "Trusted facts:\n" not in content or "invoice_number" not in content:
            return AnthropicEmulator._default_reply(req, tool)
        raw = content.split("Trusted facts:\n", 1)[1].split("\n\n", 1)[0]
        facts = json.loads(raw)
        inv, amount = facts["invoice_number"], facts["amount_due"]
        language = facts.get("language", "en")
        first = str(facts.get("reminder", "")).startswith("1 ")
        if first and any(s in inv for s in self.slips):
            value, code = amount.split(" ", 1)
            amount = f"{float(value.replace(',', '')) + 10:,.2f} {code}"
        subject, body = _BODIES.get(language, _BODIES["en"])
        link = (facts.get("payment_links") or [""])[0]
        fill = {"inv": inv, "amount": amount, "link": link}
        return {
            "tool_input": {
                "subject": subject.format(**fill),
                "body": body.format(**fill),
                "language": language if language in _BODIES else "en",
            }
        }


@dataclass
class Tracked:
    payer: Payer
    variant: str
    ids: dict[str, str]
    handle: WorkflowHandle
    #: the test server's time when the payer pays (decided from what reached their mailbox)
    pays_at: datetime | None = None
    paid: bool = False
    notes: list[str] = field(default_factory=list)


def _policies(root: Path, drafting: bool) -> Path:
    """The packaged policies; SMB's schedule ends in a write-off (the packaged cancel waits for
    RevOps: not a recovery question); the llm deployment lets a model draft reminders, with the
    hosted payment page allow-listed."""
    target = root / ("llm" if drafting else "template")
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    books = target / "playbooks.yaml"
    text = books.read_text()
    first = text.index("end_action: cancel")
    books.write_text(
        text[:first] + "end_action: write_off" + text[first + len("end_action: cancel") :]
    )
    if drafting:
        d = target / "drafting.yaml"
        d.write_text(
            d.read_text()
            .replace("llm_kinds: []", "llm_kinds: [reminder]")
            .replace("payment_links: []", f"payment_links: [{PAY_LINK!r}]")
        )
    return target


async def _status(t: Tracked) -> DunningStatus:
    return await t.handle.query("status", result_type=DunningStatus)


async def _idle(runs: list[Tracked], within_s: float = 60.0) -> dict[str, DunningStatus]:
    """Until every run waits for its next step (or has closed); their statuses."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        out: dict[str, DunningStatus] = {}
        for t in runs:
            try:
                out[t.ids["invoice"]] = await _status(t)
            except Exception:  # noqa: BLE001 - a query during a workflow task: ask again
                break
        if len(out) == len(runs) and all(s.stage in WAITING for s in out.values()):
            return out
        if asyncio.get_running_loop().time() > deadline:
            stuck = {k: s.stage for k, s in out.items() if s.stage not in WAITING}
            raise TimeoutError(f"runs not idle within {within_s:g} s: {stuck}")
        await asyncio.sleep(0.2)


async def measure(copies: int = 1) -> dict[str, Any]:
    """Seed, run and walk both variants; the recovery summary per variant, and the runs."""
    payers = population(PAY_LINK, copies)
    mailbox = MailboxEmulator(starttls=False)
    model = DraftingModel(api_key=KEY, slips=("linkpay2",))
    from tests.pairs import CB_KEY, SF_ID, SF_SECRET, Pair, pair_settings

    # Chargebee as a live Enterprise site (3,500 requests a minute), as the test suite runs it
    chargebee = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    salesforce = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    runs: list[Tracked] = []
    root = Path(tempfile.mkdtemp(prefix="revbridge-recovery-"))
    env = await _time_skipping()
    # the LLM budget book in-process: here a draft's reservation is dated by the activity's wall
    # clock while the workflows' clock has skipped days ahead, so it names a day whose budget
    # entity already closed; update-with-start on that closed ID (REJECT_DUPLICATE) answers
    # ALREADY_EXISTS and the draft fell back to the template — the test server's doing, not
    # the variant's (docs/drafting.md)
    import workers.main as worker_main
    from activities.reasoning import LocalLlmLedger

    shared_book = LocalLlmLedger()
    temporal_ledger = worker_main.TemporalLlmLedger
    worker_main.TemporalLlmLedger = lambda client, queue: shared_book  # type: ignore[assignment,misc]
    try:
        with ServerThread({chargebee: 0, salesforce: 0, mailbox: 0, model: 0}) as thread:
            urls = dict.fromkeys(("chargebee", "stripe", "salesforce", "hubspot"), UNUSED)
            urls.update({k: thread.urls[k] for k in ("chargebee", "salesforce")})
            pair = Pair.build(
                pair_settings(urls, "chargebee", "salesforce", "recovery"), urls, UNUSED
            )
            port = mailbox.start_smtp()
            llm = AnthropicLlm(api_key=KEY, base_url=thread.urls["anthropic"], timeout_s=5.0)
            suffix = uuid.uuid4().hex[:6]
            queues = {v: f"recovery-{v}-{suffix}" for v in ("template", "llm")}
            try:
                async with (
                    build_worker(
                        env.client,
                        pair.billing,
                        pair.crm,
                        task_queue=queues["template"],
                        policy_dir=_policies(root, drafting=False),
                        mailer=SmtpMailer("127.0.0.1", port, "billing@revbridge.test"),
                    ),
                    build_worker(
                        env.client,
                        pair.billing,
                        pair.crm,
                        reasoner=LlmReasoner(llm),
                        task_queue=queues["llm"],
                        policy_dir=_policies(root, drafting=True),
                        mailer=SmtpMailer("127.0.0.1", port, "billing@revbridge.test"),
                    ),
                ):
                    for variant, queue in queues.items():
                        for p in payers:
                            sfx = f"{variant[0]}{suffix}"
                            ids = await asyncio.to_thread(pair.seed, p.customer, sfx)
                            await asyncio.to_thread(pair.billing_driver.decline, ids["invoice"])
                            handle = await pair.start_directly(
                                env.client, ids, f"ev_{ids['invoice']}", task_queue=queue
                            )
                            runs.append(Tracked(p, variant, ids, handle))
                            # an hour apart: runs of one deployment never draft at the same
                            # instant (concurrent first reservations of a day's LLM budget book
                            # can race on the test server: ALREADY_EXISTS, and the draft would
                            # fall back to the template for a reason that is not the variant's)
                            statuses = await _idle(runs)
                            now = await env.get_current_time()
                            _decide(runs, statuses, mailbox, now)
                            await _advance_to(env, pair, runs, now + timedelta(hours=1))
                    await _walk(env, pair, mailbox, runs)
                    rows = await rows_of(env.client, [t.handle.id for t in runs])
                    detail = [await _detail(t) for t in runs]
                    await _end_leftovers(env, runs)
            finally:
                mailbox.stop_smtp()
                llm.close()
    finally:
        worker_main.TemporalLlmLedger = temporal_ledger  # type: ignore[misc]
        await env.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return {"summary": summarize(rows), "runs": detail, "copies": copies}


async def _detail(t: Tracked) -> dict[str, Any]:
    """One run as the report sees it, with the payer it was seeded for."""
    from cli.report import variant_of

    desc = await t.handle.describe()
    result = await t.handle.result()
    memo = await desc.memo()
    hours = ((desc.close_time or desc.start_time) - desc.start_time).total_seconds() / 3600
    return {
        "deployment": t.variant,
        "payer": t.payer.customer.key,
        "rule": t.payer.rule + (f" {t.payer.n}" if t.payer.rule == "nth" else ""),
        "variants_sent": memo.get("draft_variants", ""),
        "counted_as": variant_of(memo),
        "outcome": result.outcome.value,
        "hours": round(hours, 1),
    }


async def _time_skipping() -> WorkflowEnvironment:
    from tests.conftest import start_time_skipping

    return await start_time_skipping()


def _mail_to(mailbox: MailboxEmulator, customer_id: str) -> list[dict[str, Any]]:
    return [m for m in mailbox.inbox() if any(customer_id in r for r in m.get("to", []))]


async def _walk(
    env: WorkflowEnvironment, pair: Any, mailbox: MailboxEmulator, runs: list[Tracked]
) -> None:
    """Step by step on the test server's clock (auto-skipping locked): after each step every
    payer reads its mail; due payments are made in order of their time; then on to the next
    step, until every run has closed."""
    for _ in range(400):
        statuses = await _idle(runs)
        now = await env.get_current_time()
        _decide(runs, statuses, mailbox, now)
        open_runs = [t for t in runs if statuses[t.ids["invoice"]].stage != "closed"]
        if not open_runs:
            return
        steps = [
            s.next_step_at
            for t in open_runs
            if (s := statuses[t.ids["invoice"]]).next_step_at is not None
        ]
        due = sorted(
            (t for t in open_runs if t.pays_at and not t.paid), key=lambda t: t.pays_at or now
        )
        next_step = min(steps) if steps else None
        if due and (next_step is None or due[0].pays_at <= next_step):  # type: ignore[operator]
            payer = due[0]
            assert payer.pays_at is not None
            await env.sleep(max(payer.pays_at - now, timedelta(0)))
            await _pay(pair, env, payer)
            continue
        if next_step is None:
            raise RuntimeError("open runs with no next step and nobody paying")
        await env.sleep(max(next_step - now, timedelta(0)) + timedelta(seconds=1))
    stages = {t.ids["invoice"]: (await _status(t)).stage for t in runs}
    raise RuntimeError(f"the runs did not close within 400 steps: {stages}")


async def _advance_to(
    env: WorkflowEnvironment, pair: Any, runs: list[Tracked], until: datetime
) -> None:
    """The clock to ``until``, making every payment due before it on time, in order."""
    for t in sorted((t for t in runs if t.pays_at and not t.paid), key=lambda t: t.pays_at):  # type: ignore[arg-type,return-value]
        assert t.pays_at is not None
        if t.pays_at > until:
            break
        await env.sleep(max(t.pays_at - await env.get_current_time(), timedelta(0)))
        await _pay(pair, env, t)
        await _idle(runs)
    await env.sleep(max(until - await env.get_current_time(), timedelta(0)))


def _decide(
    runs: list[Tracked], statuses: dict[str, DunningStatus], mailbox: MailboxEmulator, now: datetime
) -> None:
    """Every payer who has not decided yet reads its mail (just delivered: the walker looks
    after every step) and, by its rule, sets when it pays."""
    for t in runs:
        if t.paid or t.pays_at is not None or statuses[t.ids["invoice"]].stage == "closed":
            continue
        which = t.payer.pays_after(_mail_to(mailbox, t.ids["customer"]))
        if which is not None:
            t.pays_at = now + timedelta(hours=t.payer.delay_hours)
            t.notes.append(f"pays {t.payer.delay_hours:g} h after message {which + 1}")


async def _pay(pair: Any, env: WorkflowEnvironment, t: Tracked) -> None:
    """The payer pays in billing; the paid event reaches the run (the webhook route's job on a
    deployment; here the canonical event is delivered directly)."""
    amount = t.payer.customer.invoice_total
    await asyncio.to_thread(pair.billing_driver.pay, t.ids["invoice"], amount)
    await t.handle.signal(
        names.SIGNAL_INVOICE_PAID,
        InvoicePaid(
            billing=pair.settings.billing,
            event_id=f"paid_{t.ids['invoice']}",
            invoice_id=t.ids["invoice"],
            customer_id=t.ids["customer"],
            occurred_at=datetime.now(UTC),
        ),
    )
    t.paid = True


async def _end_leftovers(env: WorkflowEnvironment, runs: list[Tracked]) -> None:
    """Churn interventions the runs handed their failures to are not measured here."""
    from activities.billing import churn_workflow_id

    for t in runs:
        with contextlib.suppress(Exception):  # not started, or already closed
            await env.client.get_workflow_handle(
                churn_workflow_id("chargebee", t.ids["customer"])
            ).terminate("the bench is over")


def section(r: dict[str, Any]) -> str:
    s = r["summary"]
    return "\n".join(
        [
            f"Recovery per variant (`python -m bench.drafting_recovery {r['copies']}`): "
            f"{len(r['runs'])} real dunning runs on Chargebee × Salesforce sandboxes (time-skipping "
            "server), the same seeded payers for both variants (`sandbox/payers.py`: a payer who "
            "pays only through the hosted payment link, one after the first reminder, one after "
            "the second, one never; expired cards).",
            "",
            "```",
            render(s),
            "```",
            "",
            "| deployment | payer | rule | reminders sent as | counted as | outcome | hours |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {d['deployment']} | {d['payer']} | {d['rule']} | {d['variants_sent']} | "
                f"{d['counted_as']} | {d['outcome']} | {d['hours']} |"
                for d in r["runs"]
            ),
            "",
            "SYNTHETIC: the difference follows from the payer rules and the sandbox model's "
            "drafts (the template carries no payment link; the model's draft does, except a "
            "refused first draft for the second copies). It shows the measurement working end "
            "to end, not how real customers behave: run `revbridge report recovery` on real runs.",
        ]
    )


def main(copies: int = 1) -> int:
    r = asyncio.run(measure(copies))
    print(section(r))
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else 1))
