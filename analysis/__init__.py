"""Analysis gates: measurement state machine (pure) and, later, the Prometheus provider.

This package's ``__init__`` imports nothing so that pure callers (the planner) can import
``analysis.measurement`` without pulling in any I/O library.
"""
