"""The daily billing ↔ CRM reconciliation (issue 20): workflow.py tells the story, fix.py waits for a person on one money or contract fix."""
