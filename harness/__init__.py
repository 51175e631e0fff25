"""Drives the sandboxes through our connectors for the demo, the tests and the bench: seed a
book, fail a payment, win a deal. Production code never imports it."""
