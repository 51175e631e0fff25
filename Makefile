# Each target bootstraps .venv itself: a fresh clone needs only Python 3.11+.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test dev lint bench clean histories chaos contract

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/revbridge demo

test: $(STAMP)  ## the browser the Web UI test drives (scripts/bootstrap-browser, as CI), then every test
	@scripts/bootstrap-browser $(PY)
	@$(PY) -m pytest -q -n 2 --dist loadfile

contract: $(STAMP)  ## the connector contract on each real test account whose credentials are set (one line per vendor says which; the sandboxes for the rest): tests/contract/live.py
	@REVBRIDGE_CONTRACT=live $(PY) -m pytest -p no:cacheprovider tests/contract

dev: $(STAMP)
	@$(VENV)/bin/revbridge dev

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf .revbridge

bench: $(STAMP)  ## Temporal-floor ratios for ingest, end-to-end dunning, sustained load (50/s for 60 s) and RSS (writes bench/RESULTS.md); the churn sweep on every billing platform (500) and Chargebee (10,000); 100,000: python -m bench.churn_soak --bulk 100000
	@$(PY) -m bench

histories: $(STAMP)  ## re-record tests/histories/ from the workflow scenarios (then commit them; plaintext payloads: a session key could not replay them)
	@REVBRIDGE_PAYLOAD_KEYS= REVBRIDGE_PAYLOAD_KEYS_FILE=/dev/null REVBRIDGE_WRITE_HISTORIES=1 $(PY) -m pytest -q tests/workflows tests/dunning tests/support_context tests/quote_to_cash tests/churn tests/zuora/test_zuora_pairs.py tests/security/test_llm_budget.py tests/reconcile/test_reconcile_pair.py tests/drafting/test_workflow.py tests/drafting/test_churn_drafting.py tests/revenue/test_revenue_close.py tests/sync/test_workflow.py tests/sync/test_assist.py tests/sync/test_flush.py tests/sync/test_backfill.py tests/sync/test_health.py

chaos: $(STAMP)  ## every chaos scenario on every pair, as separate processes (minutes; docs/reliability.md)
	@$(PY) -m chaos
