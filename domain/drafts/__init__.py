"""Drafting with a model, contained (issue 22): what a model is asked, what it may answer, and what
happens to its answer. Pure: no I/O, deterministic.

The story of one draft:

1. A **template** is always drafted first (``domain.messages``): reviewed text, the default and
   the fallback.
2. When a model may draft this kind of text (``policies/drafting.yaml``), it gets a prompt whose
   facts are ours, in clear, and whose customer-written text (company names, open cases) is PII-
   redacted and fenced as data (:func:`domain.containment.fence`), and must answer in a closed
   schema (:class:`DraftOutput`).
3. Its answer is checked by code (:func:`contain_draft`): the schema, then every check of
   ``domain.draft_check`` against the facts the prompt carried. A draft that fails anything is
   discarded for the template, and the reasons travel with the result for the audit.
4. What comes out is a :class:`DraftedMessage`: the text, which variant it is (``template`` or
   ``llm``, recorded for recovery attribution), the reasons any model draft was refused, and the
   SHA-256 of exactly that subject and body — the hash an
   approval carries and the send re-checks (:func:`draft_sha256`).

The package, by concern: ``policy`` (the drafting policy, the closed schema, containment of an
answer, the approval's hash), and one module per kind of text with its facts, prompt, checks and
— where there is one — its template in each language: ``reminder``, ``csm``, ``support``,
``health``.
"""

from __future__ import annotations

from domain.drafts.csm import (
    CSM_LANGUAGES,
    CSM_SYSTEM_PROMPT,
    CsmFacts,
    csm_check_facts,
    csm_prompt,
    csm_template,
)
from domain.drafts.health import (
    HEALTH_SUBJECT,
    HEALTH_SYSTEM_PROMPT,
    MAX_HEALTH_CHARS,
    HealthFacts,
    health_check_facts,
    health_language,
    health_prompt,
    health_rules_line,
)
from domain.drafts.policy import (
    DRAFTING_FILE,
    MAX_SUBJECT_CHARS,
    SHA_PREFIX,
    VARIANT_MEMO,
    DraftedMessage,
    DraftingPolicy,
    DraftKind,
    DraftOutput,
    Variant,
    approval_subject,
    approved_text_matches,
    contain_draft,
    draft_sha256,
    load_drafting_policy,
    review_task_text,
)
from domain.drafts.reminder import (
    SYSTEM_PROMPT,
    ReminderFacts,
    reminder_check_facts,
    reminder_prompt,
)
from domain.drafts.support import (
    SUPPORT_SYSTEM_PROMPT,
    SupportFacts,
    support_check_facts,
    support_prompt,
)

__all__ = [
    "CSM_LANGUAGES",
    "CSM_SYSTEM_PROMPT",
    "CsmFacts",
    "DRAFTING_FILE",
    "DraftKind",
    "DraftOutput",
    "DraftedMessage",
    "DraftingPolicy",
    "HEALTH_SUBJECT",
    "HEALTH_SYSTEM_PROMPT",
    "HealthFacts",
    "MAX_HEALTH_CHARS",
    "MAX_SUBJECT_CHARS",
    "ReminderFacts",
    "SHA_PREFIX",
    "SUPPORT_SYSTEM_PROMPT",
    "SYSTEM_PROMPT",
    "SupportFacts",
    "VARIANT_MEMO",
    "Variant",
    "approval_subject",
    "approved_text_matches",
    "contain_draft",
    "csm_check_facts",
    "csm_prompt",
    "csm_template",
    "draft_sha256",
    "health_check_facts",
    "health_language",
    "health_prompt",
    "health_rules_line",
    "load_drafting_policy",
    "reminder_check_facts",
    "reminder_prompt",
    "review_task_text",
    "support_check_facts",
    "support_prompt",
]
