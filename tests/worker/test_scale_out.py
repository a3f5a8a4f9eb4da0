"""Four workers with their own hostnames on one queue: every task runs exactly once."""
from __future__ import annotations

from collections import Counter

from django.urls import reverse

from djq import states
from djq.models import TaskResult, WorkerState
from tests.conftest import wait_for
from tests.testapp.tasks import mark_run

WORKERS = 4
TASKS = 400


def test_four_workers_share_one_queue_and_run_each_task_once(broker, start_worker, tmp_path, admin_client) -> None:
    log = tmp_path / "runs.log"
    names = [f"w{i}@scale-out" for i in range(1, WORKERS + 1)]
    for name in names:
        start_worker("-P", "threads", "-c", "2", "-n", name)
    results = [mark_run.delay(str(log)) for _ in range(TASKS)]
    ids = {r.id for r in results}
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id__in=ids, state=states.SUCCESS).count() == TASKS,
             timeout=120, interval=0.2, what="all tasks to finish")
    runs = [line.split() for line in log.read_text().splitlines()]
    per_task = Counter(task_id for task_id, _ in runs)
    assert set(per_task) == ids
    assert max(per_task.values()) == 1, [t for t, n in per_task.items() if n > 1][:5]
    per_worker = Counter(host for _, host in runs)
    assert set(per_worker) == set(names), per_worker  # every worker took a share
    stored = Counter(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("worker", flat=True))
    assert stored == per_worker
    # ...and the control room shows all four, online.
    workers = {w.hostname: w for w in WorkerState.objects.using(broker).filter(hostname__in=names)}
    assert set(workers) == set(names) and all(w.online for w in workers.values())
    if broker == "default":  # the admin reads the default database (the PostgreSQL leg writes to its own)
        page = admin_client.get(reverse("admin:djq_workerstate_changelist")).content.decode()
        assert all(name in page for name in names)
