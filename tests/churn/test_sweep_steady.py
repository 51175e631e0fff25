"""The bulk sweep over an unchanged book (Chargebee x Salesforce sandboxes of its own): the second
sweep writes nothing to either vendor (from the sandbox ledgers), starts no intervention and
signals none of the running ones (their own count of risk signals seen), and reads the book in a
few bulk calls per page. ``python -m bench.churn_soak --bulk N`` runs the same at 10k / 100k."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from bench import churn_soak

N = 150  # two pages of 100


@pytest.mark.timeout(600)
async def test_a_second_sweep_over_an_unchanged_book_writes_and_signals_nothing(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    policies = churn_soak.no_offer_policies(tmp_path / "policies")
    with churn_soak.bulk_sandboxes() as urls:
        first, second = await churn_soak.bulk_bench(
            temporal_env.client, urls, policies, N, limits=False, statuses=True
        )
    print(first.line("first"), second.line("second"), sep="\n")
    assert first.customers == second.customers == N
    # the cold book: every score written (in one collections write per page for the low-risk
    # ones), interventions started for the customers at risk
    assert first.crm_writes > 0 and first.started > 0
    # the interventions it started scored from the sweep's handoff: no billing read of their
    # own (the cold sweep reads what the unchanged one does, plus its writes), no CRM read
    assert first.billing_calls - first.billing_writes <= 2 * 4 + 2
    assert first.crm_calls - first.crm_writes == 2
    # the unchanged book: not one write on either side
    assert (second.billing_writes, second.crm_writes) == (0, 0)
    # no intervention started or signalled: the running ones saw only the first sweep's signal
    assert second.started == first.started
    assert second.signals_seen == first.signals_seen
    assert set(second.signals_seen.values()) == {1}
    # the reads (issue 15, ≤ 1 call per 20 customers): per page of 100 one customer list, the
    # subscriptions, the failed payments and the usage, and one SOQL; the event log at most
    # once per sweep (two requests: the window and the look back before it)
    assert second.crm_calls == 2
    assert second.billing_calls <= 2 * 4 + 2
