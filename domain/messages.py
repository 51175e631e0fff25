"""Dunning messages drafted from reviewed templates: tone by segment, wording by failure class and
by how far along the schedule is. Pure (no I/O), so a draft is reproducible from its inputs.

Customer-controlled text (company names) is data: it is inserted, never interpreted, and trimmed.
The draft carries no card data and no email address; the address is added by the email channel.
"""

from __future__ import annotations

from typing import Any

from domain.decisions import FailureClass
from domain.models import Frozen


class MessageDraft(Frozen):
    subject: str
    body: str


_ASK = {
    FailureClass.EXPIRED_CARD: "The card on file has expired. Please add a current card so we "
    "can collect the payment.",
    FailureClass.INSUFFICIENT_FUNDS: "The bank declined the payment for insufficient funds. We "
    "will try again shortly; you can also pay now by another method.",
    FailureClass.HARD_DECLINE: "The bank declined the payment and will keep declining it. Please "
    "use a different payment method.",
    FailureClass.TECHNICAL: "A technical problem stopped the payment. We will retry it for you; "
    "there is nothing you need to do unless the retry fails.",
    FailureClass.UNKNOWN: "We could not collect the payment. Please check the payment method "
    "on file, or reply and we will help.",
}

_OPENERS = {
    "friendly": ("Hi {name},", "Thanks for being with us."),
    "firm": ("Hello {name},", "This needs your attention."),
    "formal": ("Dear {name} team,", "We are writing about your account."),
}


#: the reminder's words in the other languages a deployment may write in (English above); the
#: figures are written the same way in every language (``125.00 USD``), as the checks read them
_LOCALIZED: dict[str, dict[str, Any]] = {
    "fr": {
        "ask": {
            FailureClass.EXPIRED_CARD: "La carte enregistrée a expiré. Merci d'ajouter une carte "
            "valide pour que nous puissions encaisser le paiement.",
            FailureClass.INSUFFICIENT_FUNDS: "La banque a refusé le paiement pour provision "
            "insuffisante. Nous réessaierons sous peu ; vous pouvez aussi payer dès maintenant "
            "par un autre moyen.",
            FailureClass.HARD_DECLINE: "La banque a refusé le paiement et continuera de le "
            "refuser. Merci d'utiliser un autre moyen de paiement.",
            FailureClass.TECHNICAL: "Un problème technique a empêché le paiement. Nous le "
            "relancerons pour vous ; vous n'avez rien à faire sauf si cette tentative échoue.",
            FailureClass.UNKNOWN: "Nous n'avons pas pu encaisser le paiement. Merci de vérifier "
            "le moyen de paiement enregistré, ou répondez-nous et nous vous aiderons.",
        },
        "openers": {
            "friendly": ("Bonjour {name},", "Bonjour,", "Merci de votre confiance."),
            "firm": ("Bonjour {name},", "Bonjour,", "Ce message demande votre attention."),
            "formal": (
                "À l'équipe {name},",
                "Madame, Monsieur,",
                "Nous vous écrivons au sujet de votre compte.",
            ),
        },
        "subject_last": "Dernier rappel : la facture {invoice} ({amount}) est en retard",
        "subject": "Le paiement de la facture {invoice} ({amount}) n'a pas abouti",
        "closing_last": "Ceci est notre dernier rappel. Sans paiement sous {days} jours, le compte "
        "passe en revue de recouvrement.",
        "closing": "Si vous avez déjà payé, merci d'ignorer ce message.",
        "could_not": "Nous n'avons pas pu encaisser {amount} pour la facture {invoice}.",
        "count": "(Rappel {n} sur {m}.)",
    },
    "de": {
        "ask": {
            FailureClass.EXPIRED_CARD: "Die hinterlegte Karte ist abgelaufen. Bitte hinterlegen "
            "Sie eine gültige Karte, damit wir die Zahlung einziehen können.",
            FailureClass.INSUFFICIENT_FUNDS: "Die Bank hat die Zahlung mangels Deckung abgelehnt. "
            "Wir versuchen es in Kürze erneut; Sie können auch jetzt auf anderem Weg zahlen.",
            FailureClass.HARD_DECLINE: "Die Bank hat die Zahlung abgelehnt und wird sie weiter "
            "ablehnen. Bitte verwenden Sie eine andere Zahlungsmethode.",
            FailureClass.TECHNICAL: "Ein technisches Problem hat die Zahlung verhindert. Wir "
            "versuchen es für Sie erneut; Sie müssen nichts tun, es sei denn, der neue Versuch "
            "schlägt fehl.",
            FailureClass.UNKNOWN: "Wir konnten die Zahlung nicht einziehen. Bitte prüfen Sie die "
            "hinterlegte Zahlungsmethode, oder antworten Sie uns, und wir helfen Ihnen.",
        },
        "openers": {
            "friendly": ("Hallo {name},", "Hallo,", "Danke, dass Sie bei uns sind."),
            "firm": (
                "Guten Tag {name},",
                "Guten Tag,",
                "Diese Nachricht erfordert Ihre Aufmerksamkeit.",
            ),
            "formal": (
                "Sehr geehrtes Team von {name},",
                "Sehr geehrte Damen und Herren,",
                "Wir schreiben Ihnen zu Ihrem Konto.",
            ),
        },
        "subject_last": "Letzte Erinnerung: Rechnung {invoice} ({amount}) ist überfällig",
        "subject": "Die Zahlung für Rechnung {invoice} ({amount}) ist fehlgeschlagen",
        "closing_last": "Dies ist unsere letzte Erinnerung. Ohne Zahlung in {days} Tagen geht das "
        "Konto in die Prüfung durch das Inkasso.",
        "closing": "Falls Sie bereits bezahlt haben, betrachten Sie diese Nachricht bitte als "
        "gegenstandslos.",
        "could_not": "Wir konnten {amount} für die Rechnung {invoice} nicht einziehen.",
        "count": "(Erinnerung {n} von {m}.)",
    },
    "es": {
        "ask": {
            FailureClass.EXPIRED_CARD: "La tarjeta registrada ha caducado. Añada una tarjeta "
            "vigente para que podamos cobrar el pago.",
            FailureClass.INSUFFICIENT_FUNDS: "El banco rechazó el pago por fondos insuficientes. "
            "Lo intentaremos de nuevo en breve; también puede pagar ahora con otro método.",
            FailureClass.HARD_DECLINE: "El banco rechazó el pago y lo seguirá rechazando. Utilice "
            "otro método de pago.",
            FailureClass.TECHNICAL: "Un problema técnico impidió el pago. Lo reintentaremos por "
            "usted; no tiene que hacer nada salvo que el reintento falle.",
            FailureClass.UNKNOWN: "No pudimos cobrar el pago. Revise el método de pago "
            "registrado, o responda y le ayudaremos.",
        },
        "openers": {
            "friendly": ("Hola, {name}:", "Hola:", "Gracias por estar con nosotros."),
            "firm": ("Hola, {name}:", "Hola:", "Este mensaje requiere su atención."),
            "formal": (
                "Estimado equipo de {name}:",
                "Estimados señores:",
                "Le escribimos en relación con su cuenta.",
            ),
        },
        "subject_last": "Último recordatorio: la factura {invoice} ({amount}) está vencida",
        "subject": "El pago de la factura {invoice} ({amount}) no se completó",
        "closing_last": "Este es nuestro último recordatorio. Si no recibimos el pago en {days} "
        "días, la cuenta pasará a revisión de cobros.",
        "closing": "Si ya ha pagado, ignore este mensaje.",
        "could_not": "No pudimos cobrar {amount} por la factura {invoice}.",
        "count": "(Recordatorio {n} de {m}.)",
    },
}
#: languages the reminder templates are written in (any other: English)
TEMPLATE_LANGUAGES = ("en", *_LOCALIZED)


def locale_language(locale: str | None) -> str | None:
    """The ISO 639-1 language of a platform's locale value (``fr-FR``, ``fr_CA``, ``de``), or
    None when it names none."""
    head = (locale or "").strip().replace("_", "-").split("-")[0].lower()
    return head if len(head) == 2 and head.isascii() and head.isalpha() else None


def _clean(text: str, limit: int = 80) -> str:
    # a name is data: one line, no control characters, bounded
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat[:limit] or "there"


def draft_reminder(
    *,
    company: str | None,
    invoice_id: str,
    amount_due: int,
    currency: str,
    failure_class: FailureClass,
    reminder: int,
    reminders: int,
    tone: str,
    days_left: int,
    language: str = "en",
) -> MessageDraft:
    """Reminder ``reminder`` of ``reminders`` for an unpaid invoice, in ``language`` when we have
    its templates (:data:`TEMPLATE_LANGUAGES`), else in English."""
    if language in _LOCALIZED:
        return _localized(
            _LOCALIZED[language],
            company=company,
            invoice_id=invoice_id,
            amount=f"{amount_due / 100:,.2f} {currency.upper()}",
            failure_class=failure_class,
            last=reminder >= reminders,
            counts=(reminder, reminders),
            tone=tone,
            days_left=days_left,
        )
    name = _clean(company or "there")
    greeting, context = _OPENERS.get(tone, _OPENERS["friendly"])
    amount = f"{amount_due / 100:,.2f} {currency.upper()}"
    last = reminder >= reminders
    subject = (
        f"Final reminder: invoice {invoice_id} ({amount}) is past due"
        if last
        else f"Payment for invoice {invoice_id} ({amount}) did not go through"
    )
    closing = (
        f"This is our last reminder. Without payment within {days_left} days the account "
        "moves to collections review."
        if last
        else "If you have already paid, please ignore this message."
    )
    body = "\n\n".join(
        [
            greeting.format(name=name),
            context,
            f"We could not collect {amount} for invoice {invoice_id}. "
            + _ASK.get(failure_class, _ASK[FailureClass.UNKNOWN]),
            closing,
            f"(Reminder {reminder} of {reminders}.)",
        ]
    )
    return MessageDraft(subject=subject, body=body)


def _localized(
    words: dict[str, Any],
    *,
    company: str | None,
    invoice_id: str,
    amount: str,
    failure_class: FailureClass,
    last: bool,
    counts: tuple[int, int],
    tone: str,
    days_left: int,
) -> MessageDraft:
    named, nameless, context = words["openers"].get(tone, words["openers"]["friendly"])
    greeting = named.format(name=_clean(company)) if company and company.strip() else nameless
    subject = words["subject_last" if last else "subject"].format(invoice=invoice_id, amount=amount)
    closing = words["closing_last"].format(days=days_left) if last else words["closing"]
    ask = words["ask"].get(failure_class, words["ask"][FailureClass.UNKNOWN])
    body = "\n\n".join(
        [
            greeting,
            context,
            words["could_not"].format(amount=amount, invoice=invoice_id) + " " + ask,
            closing,
            words["count"].format(n=counts[0], m=counts[1]),
        ]
    )
    return MessageDraft(subject=subject, body=body)
