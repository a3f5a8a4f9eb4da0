"""Django's task tests left out of each pass of run.py, each with why.

Keys are ``module.Class.test``. Only tests about another backend's internals or
capabilities, or about where a run's log records end up, belong here.
"""
from __future__ import annotations

import sys

#: ImmediateBackend's own limits, and DummyBackend's in-memory store
_CAPABILITIES = {
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result":
        "edits DummyBackend's in-memory copy of a result; djq's result is its stored row",
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result_async":
        "edits DummyBackend's in-memory copy of a result; djq's result is its stored row",
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_get_result":
        "ImmediateBackend has no get_result; djq's backend supports_get_result",
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_refresh_result":
        "ImmediateBackend cannot refresh; djq's backend supports_get_result",
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_pass_run_after":
        "ImmediateBackend refuses run_after; djq's backend supports_defer",
}
#: asserts the log records of a run in the calling process: on a worker they are in the
#: worker's log (the eager pass runs each of these in-process)
_LOGS_IN_CALLER = {
    name: "the run's log records are in the worker's process"
    for name in [*(f"test_immediate_backend.ImmediateBackendTestCase.{test}" for test in (
        "test_catches_exception", "test_complex_exception", "test_complex_return_value",
        "test_enqueue_logs", "test_failed_logs", "test_successful_task_no_none_in_logs")),
        "test_tasks.TaskTestCase.test_task_error_invalid_exception",
        "test_tasks.TaskTestCase.test_task_error_unknown_module"]
}
#: what the eager pass runs (in-process, as Django's ImmediateBackend): the immediate
#: backend's tests, and the tests that need a run's log records in this process
EAGER_TESTS = ["test_immediate_backend", "test_tasks.TaskTestCase.test_task_error_invalid_exception",
               "test_tasks.TaskTestCase.test_task_error_unknown_module"]

WORKER_PASS: dict[str, str] = {
    **_CAPABILITIES, **_LOGS_IN_CALLER,
    "test_immediate_backend.ImmediateBackendTestCase.test_throws_keyboard_interrupt":
        "a KeyboardInterrupt raised by a task on a worker is that task's failure; the eager pass "
        "checks it reaches the caller",
    "test_immediate_backend.ImmediateBackendTransactionTestCase.test_doesnt_wait_until_transaction_commit_by_default":
        "djq's enqueue is transactional (a worker sees the task at commit, by design); the eager pass runs it",
}
EAGER_PASS: dict[str, str] = dict(_CAPABILITIES)


def for_this_python() -> dict[str, str]:
    """Tests that assert the interpreter's own wording."""
    if sys.version_info >= (3, 12):
        return {}
    return {"test_custom_backend.CustomBackendTestCase.test_no_enqueue":
            "asserts Python 3.12's wording of the abstract-class TypeError"}
