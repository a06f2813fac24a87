"""Prepared benchmark scripts that write results rows (run them; they are not tests)."""
