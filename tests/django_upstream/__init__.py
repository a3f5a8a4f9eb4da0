"""Django's own ``tests/tasks/`` run against djq's backend (see run.py and docs/django-tasks.md)."""
