"""The tasks the benchmark sends: a no-op and a 10 ms sleep."""
