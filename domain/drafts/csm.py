"""A CSM's outreach to an account at risk: its facts, the model's prompt, the checks, and the
reviewed template in each language we have the words for (:data:`CSM_LANGUAGES`)."""

from __future__ import annotations

import json
import re
from typing import Any

from domain.containment import SYSTEM_PROMPT_DATA_RULES, fence, redact_pii
from domain.draft_check import DraftFacts, facts_from_text
from domain.drafts.policy import DraftingPolicy
from domain.models import Frozen

CSM_SYSTEM_PROMPT = (
    "You help a customer success manager reach out to an account at risk of churning. Write the "
    "task note the CSM reads: a short risk summary, ONE recommended next action, and a short "
    "outreach email draft the CSM can adapt. Use ONLY the trusted facts: no figure, date or "
    "percentage that is not in them; mention a retention offer only if the facts carry one, and "
    "only as awaiting approval; no links, email addresses or phone numbers; never name any other "
    "company. Answer only with the tool.\n\n" + SYSTEM_PROMPT_DATA_RULES
)


class CsmFacts(Frozen):
    customer_id: str
    account_name: str
    score: int
    level: str
    reasons: list[str] = []
    talking_points: list[str] = []
    #: a retention offer proposed for approval (percent off, months), if any
    offer_percent: float | None = None
    offer_months: int | None = None
    language: str = "en"
    #: the reviewed rules text (the template): its figures are the facts
    template: str


def csm_prompt(f: CsmFacts) -> str:
    facts = {
        "churn_risk": f"{f.score}/100 ({f.level})",
        "reasons": f.reasons,
        "talking_points": f.talking_points,
        "retention_offer_awaiting_approval": (
            f"{f.offer_percent:g}% off for {f.offer_months} months"
            if f.offer_percent is not None
            else None
        ),
        "language": f.language,
    }
    parts = [
        f"Trusted facts:\n{json.dumps(facts, indent=1, ensure_ascii=False)}",
        fence("account_name", f.account_name, max_chars=200),
    ]
    return redact_pii("\n\n".join(parts))


def csm_check_facts(f: CsmFacts, policy: DraftingPolicy) -> DraftFacts:
    base = DraftFacts(
        offers=["discount"] if f.offer_percent is not None else [],
        percents=[f.offer_percent] if f.offer_percent is not None else [],
        scripts=policy.languages.get(f.language, ["LATIN"]),
        max_chars=policy.max_chars,
        names=[f.account_name],
        customer_ids=[f.customer_id],
        untrusted=[f.account_name],
    )
    return facts_from_text(f.template, base)


_CSM_WORDS: dict[str, dict[str, Any]] = {
    "fr": {
        "intro": "Bonjour — nous contactons {name} car son risque de churn est de {score}/100 "
        "({level}).",
        "why": "Pourquoi : {reasons}.",
        "none": "aucun facteur dominant",
        "points": "Points à aborder :",
        "offer": "Une offre de fidélisation de {percent}% de remise pendant {months} mois a été "
        "proposée à RevOps pour approbation ; ne la promettez pas avant son approbation.",
        "levels": {"low": "faible", "medium": "moyen", "high": "élevé", "critical": "critique"},
        "hooks": {
            "help them update their payment method": "les aider à mettre à jour leur moyen de "
            "paiement",
            "agree how the open invoice gets paid": "convenir du règlement de la facture ouverte",
            "ask what made them scale down": "demander ce qui les a fait réduire leur usage",
            "book a usage review with their admin": "planifier une revue d'usage avec leur "
            "administrateur",
            "make sure their open cases have an owner and a date": "s'assurer que leurs tickets "
            "ouverts ont un responsable et une date",
            "escalate the oldest open case": "escalader le plus ancien ticket ouvert",
            "check onboarding is complete": "vérifier que l'onboarding est terminé",
            "understand the smaller footprint": "comprendre la baisse de leur périmètre",
            "start the renewal conversation now": "lancer dès maintenant la discussion de "
            "renouvellement",
            "ask why they plan to cancel before it takes effect": "demander pourquoi ils "
            "prévoient de résilier avant que cela prenne effet",
        },
        "reasons": [
            (
                r"^(\d+) failed payment\(s\) in the last (\d+) days$",
                "{0} paiement(s) échoué(s) sur les {1} derniers jours",
            ),
            (
                r"^(\d+) failed invoice\(s\) still unpaid$",
                "{0} facture(s) échouée(s) encore impayée(s)",
            ),
            (
                r"^(\d+) downgrade\(s\) in the last (\d+) days$",
                "{0} rétrogradation(s) sur les {1} derniers jours",
            ),
            (r"^usage down (\d+)% month over month$", "usage en baisse de {0}% sur un mois"),
            (r"^(\d+) open support case\(s\)$", "{0} ticket(s) de support ouvert(s)"),
            (
                r"^oldest open case is (\d+) days old$",
                "le plus ancien ticket ouvert date de {0} jours",
            ),
            (r"^customer for only (\d+) days$", "client depuis seulement {0} jours"),
            (r"^MRR down (\d+)% \((.+)\)$", "MRR en baisse de {0}% ({1})"),
            (r"^renewal in (\d+) days$", "renouvellement dans {0} jours"),
            (r"^a subscription is scheduled to cancel$", "un abonnement doit être résilié"),
        ],
    },
    "de": {
        "intro": "Hallo — wir melden uns bei {name}, weil das Abwanderungsrisiko bei {score}/100 "
        "({level}) liegt.",
        "why": "Warum: {reasons}.",
        "none": "kein einzelner Treiber",
        "points": "Gesprächspunkte:",
        "offer": "Ein Halteangebot von {percent}% Nachlass für {months} Monate wurde RevOps zur "
        "Freigabe vorgelegt; versprechen Sie es nicht vor der Freigabe.",
        "levels": {"low": "niedrig", "medium": "mittel", "high": "hoch", "critical": "kritisch"},
        "hooks": {
            "help them update their payment method": "bei der Aktualisierung der "
            "Zahlungsmethode helfen",
            "agree how the open invoice gets paid": "vereinbaren, wie die offene Rechnung "
            "bezahlt wird",
            "ask what made them scale down": "fragen, warum sie reduziert haben",
            "book a usage review with their admin": "eine Nutzungsbesprechung mit ihrem Admin "
            "vereinbaren",
            "make sure their open cases have an owner and a date": "sicherstellen, dass ihre "
            "offenen Fälle einen Verantwortlichen und ein Datum haben",
            "escalate the oldest open case": "den ältesten offenen Fall eskalieren",
            "check onboarding is complete": "prüfen, ob das Onboarding abgeschlossen ist",
            "understand the smaller footprint": "den kleineren Umfang verstehen",
            "start the renewal conversation now": "das Verlängerungsgespräch jetzt beginnen",
            "ask why they plan to cancel before it takes effect": "fragen, warum sie kündigen "
            "wollen, bevor es wirksam wird",
        },
        "reasons": [
            (
                r"^(\d+) failed payment\(s\) in the last (\d+) days$",
                "{0} fehlgeschlagene Zahlung(en) in den letzten {1} Tagen",
            ),
            (
                r"^(\d+) failed invoice\(s\) still unpaid$",
                "{0} fehlgeschlagene Rechnung(en) noch offen",
            ),
            (
                r"^(\d+) downgrade\(s\) in the last (\d+) days$",
                "{0} Downgrade(s) in den letzten {1} Tagen",
            ),
            (r"^usage down (\d+)% month over month$", "Nutzung {0}% unter dem Vormonat"),
            (r"^(\d+) open support case\(s\)$", "{0} offene(r) Supportfall/-fälle"),
            (r"^oldest open case is (\d+) days old$", "ältester offener Fall ist {0} Tage alt"),
            (r"^customer for only (\d+) days$", "Kunde seit erst {0} Tagen"),
            (r"^MRR down (\d+)% \((.+)\)$", "MRR {0}% gesunken ({1})"),
            (r"^renewal in (\d+) days$", "Verlängerung in {0} Tagen"),
            (
                r"^a subscription is scheduled to cancel$",
                "ein Abonnement ist zur Kündigung vorgemerkt",
            ),
        ],
    },
    "es": {
        "intro": "Hola — contactamos con {name} porque su riesgo de baja es de {score}/100 "
        "({level}).",
        "why": "Por qué: {reasons}.",
        "none": "ningún factor dominante",
        "points": "Temas sugeridos:",
        "offer": "Se ha propuesto a RevOps una oferta de retención del {percent}% durante "
        "{months} meses, pendiente de aprobación; no la prometa antes de que se apruebe.",
        "levels": {"low": "bajo", "medium": "medio", "high": "alto", "critical": "crítico"},
        "hooks": {
            "help them update their payment method": "ayudarles a actualizar su método de pago",
            "agree how the open invoice gets paid": "acordar cómo se paga la factura pendiente",
            "ask what made them scale down": "preguntar por qué redujeron su plan",
            "book a usage review with their admin": "agendar una revisión de uso con su "
            "administrador",
            "make sure their open cases have an owner and a date": "asegurar que sus casos "
            "abiertos tengan responsable y fecha",
            "escalate the oldest open case": "escalar el caso abierto más antiguo",
            "check onboarding is complete": "comprobar que el onboarding está completo",
            "understand the smaller footprint": "entender la reducción de su uso",
            "start the renewal conversation now": "iniciar ya la conversación de renovación",
            "ask why they plan to cancel before it takes effect": "preguntar por qué piensan "
            "cancelar antes de que se haga efectivo",
        },
        "reasons": [
            (
                r"^(\d+) failed payment\(s\) in the last (\d+) days$",
                "{0} pago(s) fallido(s) en los últimos {1} días",
            ),
            (
                r"^(\d+) failed invoice\(s\) still unpaid$",
                "{0} factura(s) fallida(s) aún sin pagar",
            ),
            (
                r"^(\d+) downgrade\(s\) in the last (\d+) days$",
                "{0} reducción(es) de plan en los últimos {1} días",
            ),
            (r"^usage down (\d+)% month over month$", "uso un {0}% menor que el mes anterior"),
            (r"^(\d+) open support case\(s\)$", "{0} caso(s) de soporte abierto(s)"),
            (r"^oldest open case is (\d+) days old$", "el caso abierto más antiguo tiene {0} días"),
            (r"^customer for only (\d+) days$", "cliente desde hace solo {0} días"),
            (r"^MRR down (\d+)% \((.+)\)$", "MRR un {0}% menor ({1})"),
            (r"^renewal in (\d+) days$", "renovación en {0} días"),
            (
                r"^a subscription is scheduled to cancel$",
                "una suscripción tiene la baja programada",
            ),
        ],
    },
}


#: languages the CSM note's rules text is written in (English: the churn rules' own text)
CSM_LANGUAGES = ("en", *_CSM_WORDS)


def _translate(text: str, table: list[tuple[str, str]]) -> str:
    for pattern, out in table:
        if m := re.match(pattern, text):
            return out.format(*m.groups())
    return text  # a reason we have no words for stays as the rules wrote it


def csm_template(f: CsmFacts) -> str:
    """The CSM note's rules text in ``f.language`` when we have its words (the churn rules'
    English text, ``f.template``, otherwise): the same figures, facts and offer, so the same
    checks hold; a reason or talking point we have no words for stays in English."""
    words = _CSM_WORDS.get(f.language)
    if words is None:
        return f.template
    lines = [
        words["intro"].format(
            name=f.account_name, score=f.score, level=words["levels"].get(f.level, f.level)
        ),
        words["why"].format(
            reasons="; ".join(_translate(r, words["reasons"]) for r in f.reasons) or words["none"]
        ),
        words["points"],
        *(f"- {words['hooks'].get(p, p)}" for p in f.talking_points),
    ]
    if f.offer_percent is not None:
        lines.append(words["offer"].format(percent=f"{f.offer_percent:g}", months=f.offer_months))
    return "\n".join(lines)
