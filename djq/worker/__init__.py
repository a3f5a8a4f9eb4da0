"""The worker: a Blueprint of bootsteps (see steps.py) around a consumer and a pool."""
