"""A Django app for the signal tests: receivers for every djq.signals signal that write
one JSON line per call to DJQ_TEST_SIGNAL_LOG (the signal, its sender, its arguments)."""
