"""The tasks the benchmark sends: a no-op, a 10 ms sleep and a ~50 ms CPU loop."""
