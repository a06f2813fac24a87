"""Reports: markdown and figures from results only."""
