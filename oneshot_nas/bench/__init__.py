"""Benchmarks that print figures: `python -m oneshot_nas.bench NAME [flags]`.

Each module here is one benchmark with a `main(argv)`; ratios are always measured against a
baseline run in the same process, so they hold on any machine.
"""
