"""Helpers of ``benchmarks/bp_speed.py``: seeded workloads, one adapter per BP engine,
timing and memory measurement, and the report (Markdown table, JSON line, scaling plot)."""
