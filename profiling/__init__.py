"""Entry points for profiling: score.py (MicroNet profile and score), latency_table.py."""
