"""Task states, as stored in results and shown in the admin."""
from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"

#: States after which a task will not change again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States after which a task will not succeed.
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
#: States a task passes through before it is ready.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
ALL_STATES = (PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)
