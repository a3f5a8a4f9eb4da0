"""DJQ_TASK_ROUTES and priorities in each broker's terms."""
from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from djq.exceptions import ConfigurationError
from djq.messaging.routing import broker_priority, route_for
from djq.models import QueueMessage
from tests.testapp.tasks import add

ROUTES = {
    "tests.testapp.tasks.add": {"queue": "math", "priority": 7},
    "tests.testapp.*": "testapp",
    "tests.*": {"priority": 2},
}


@override_settings(DJQ_TASK_ROUTES=ROUTES)
def test_exact_names_win_then_globs_in_order() -> None:
    assert route_for("tests.testapp.tasks.add") == {"queue": "math", "priority": 7}
    assert route_for("tests.testapp.tasks.fail") == {"queue": "testapp"}
    assert route_for("tests.echo") == {"priority": 2}
    assert route_for("elsewhere.task") == {}


@pytest.mark.django_db
def test_routes_apply_unless_the_call_says_otherwise() -> None:
    with override_settings(DJQ_TASK_ROUTES=ROUTES):
        add.delay(1, 1)
        add.apply_async((1, 1), queue="explicit", priority=1)
    rows = list(QueueMessage.objects.order_by("id").values_list("queue", "priority"))
    assert rows == [("math", 7), ("explicit", 1)]


@pytest.mark.parametrize(
    "routes",
    [{"a": 3}, {"a": {"queue": ""}}, {"a": {"priority": 300}}, {"a": {"lane": "x"}}, {"": "q"}, [("a",)]],
)
def test_malformed_routes_are_a_check_error(routes) -> None:
    with override_settings(DJQ_TASK_ROUTES=routes):
        assert "djq.E008" in {m.id for m in checks.run_checks(tags=["djq"])}
        with pytest.raises(ConfigurationError):
            route_for("a")


def test_priorities_in_each_brokers_terms() -> None:
    assert broker_priority("djq://", 200) == 200
    assert broker_priority("amqp://h//", 200) == 9
    assert broker_priority("amqp://h//", 3) == 3
    assert broker_priority("redis://h/0", 9) == 0, "kombu's Redis serves 0 first"
    assert broker_priority("redis://h/0", 0) == 9
    assert broker_priority("redis://h/0", None) is None
