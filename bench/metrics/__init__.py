"""Metrics: toy, image (torch-fidelity), domain-classifier and likelihood metrics."""
