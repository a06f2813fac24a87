"""Run configuration, suites and presets: what a run and a comparison are, resolved and validated before any work."""
