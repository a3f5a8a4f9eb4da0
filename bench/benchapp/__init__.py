"""The tasks the benchmark sends: a no-op (also one with ignore_result), a 10 ms sleep, a ~50 ms CPU loop."""
