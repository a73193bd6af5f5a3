"""Metric modules: funnels, abandonment, conversion, segments, experiments (read built tables only)."""
