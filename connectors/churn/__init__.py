"""The churn sweep's page readers, one module per billing platform (issue 15: ≤ 1 vendor call
per 20 customers in steady state). Each reads, for a page of customers, only what the churn score
uses, with the vendor's bulk filters, and hands back :class:`domain.churn.SweepSnapshot`s; the
connectors' ``customer_snapshots`` delegate here."""
