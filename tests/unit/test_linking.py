"""Linking the existing book (domain/linking.py): external IDs, then exact email, then company
domain, then similar names — ambiguous pairs to review, nothing linked twice."""

from __future__ import annotations

import random

from domain.linking import BillingParty, CrmParty, plan_links


def test_each_rule_in_order_and_ambiguity_to_review() -> None:
    customers = [
        BillingParty(id="c1", company="Globex", crm_account_id="a1"),
        BillingParty(id="c2", company="Initech", email="bill@initech.example"),
        BillingParty(id="c3", company="Umbrella Labs", email="ap@umbrella.example"),
        BillingParty(id="c4", company="Northwind Analytics Inc."),
        BillingParty(id="c5", company="Acme"),
        BillingParty(id="c6", company="Hooli", email="someone@gmail.com"),
    ]
    accounts = [
        CrmParty(id="a1", name="Globex Corporation"),
        CrmParty(id="a2", name="Initech LLC", emails=["bill@initech.example"]),
        CrmParty(id="a3", name="Umbrella", domain="umbrella.example"),
        CrmParty(id="a4", name="Northwind Analytics"),
        CrmParty(id="a5", name="Acme Rockets"),
        CrmParty(id="a6", name="Acme Anvils"),
        CrmParty(id="a7", name="Stark Industries"),
    ]
    plan = plan_links(customers, accounts)
    assert [(x.customer_id, x.account_id, x.method) for x in plan.links] == [
        ("c1", "a1", "external_id"),
        ("c2", "a2", "email"),
        ("c3", "a3", "domain"),
        ("c4", "a4", "name"),
    ]
    (review,) = plan.review
    assert review.customer_id == "c5"
    assert {c.account_id for c in review.candidates} == {"a5", "a6"}
    assert plan.unmatched_customers == ["c6"]  # free mail proves nothing
    assert plan.unmatched_accounts == ["a7"]
    assert plan.counts()["review"] == 1


def test_an_account_is_never_linked_twice() -> None:
    customers = [
        BillingParty(id="c1", company="Globex", email="a@globex.example"),
        BillingParty(id="c2", company="Globex", email="b@globex.example"),
    ]
    accounts = [CrmParty(id="a1", name="Globex", domain="globex.example")]
    plan = plan_links(customers, accounts)
    assert [x.account_id for x in plan.links] == ["a1"]
    assert len({x.account_id for x in plan.links}) == len(plan.links)


def test_a_large_book_links_by_name_with_typos_and_stays_deterministic() -> None:
    rnd = random.Random(11)
    words = [f"{w}{i}" for i, w in enumerate(["alpha", "bravo", "delta", "omega", "sigma"] * 400)]
    customers, accounts = [], []
    for i, w in enumerate(words):
        name = f"{w} {rnd.choice(['Systems', 'Foods', 'Labs', 'Works'])}"
        customers.append(BillingParty(id=f"c{i:05d}", company=name + " Inc."))
        typo = name.replace("Systems", "Sytems").replace("Labs", "Lab's") if i % 10 == 0 else name
        accounts.append(CrmParty(id=f"a{i:05d}", name=typo))
    plan = plan_links(customers, accounts)
    assert len(plan.links) == len(words)
    assert all(x.customer_id[1:] == x.account_id[1:] for x in plan.links)
    assert plan_links(list(reversed(customers)), accounts) == plan
