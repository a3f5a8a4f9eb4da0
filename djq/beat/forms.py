"""The admin form of a periodic task: a schedule picker, a task dropdown, checked JSON.

The picker is one dropdown of every schedule, grouped by kind, so "exactly one schedule"
holds by construction; the model's own check still runs for every other way in.
"""
from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..models import (SCHEDULE_FIELDS, ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask,
                      SolarSchedule)
from ..registry import registry

SCHEDULE_MODELS: dict[str, Any] = {
    "interval": IntervalSchedule, "crontab": CrontabSchedule, "solar": SolarSchedule, "clocked": ClockedSchedule,
}


class JSONValueField(forms.JSONField):
    """A JSON field that must hold a list (args) or an object (kwargs), with errors that say so."""

    def __init__(self, *, kind: type, example: str, **kwargs: Any) -> None:
        self.kind = kind
        self.example = example
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2, "cols": 60}))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        # An Add form has no value yet: show the empty list or object the model stores, not
        # "null", which this field would refuse.
        return super().prepare_value(self.kind() if value is None else value)

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return self.kind()
        if isinstance(value, self.kind):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"This is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                                  f"Example: {self.example}", code="invalid") from exc
        if not isinstance(parsed, self.kind):
            wanted = "a list" if self.kind is list else "an object"
            raise ValidationError(f"This must be {wanted} in JSON, such as {self.example}; "
                                  f"got {type(parsed).__name__} {value!r}", code="invalid")
        return parsed


def schedule_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    groups = []
    for kind, model in SCHEDULE_MODELS.items():
        options = [(f"{kind}:{row.pk}", row.describe()) for row in model.objects.all()]
        groups.append((kind.capitalize(), options))
    return groups


class PeriodicTaskForm(forms.ModelForm):
    task = forms.ChoiceField(label="Task", help_text="Tasks registered in this process (by @task).")
    schedule = forms.ChoiceField(label="Schedule")
    args = JSONValueField(kind=list, example='[1, "two"]', help_text='Positional arguments, a JSON list: [1, "two"]')
    kwargs = JSONValueField(kind=dict, example='{"verbose": true}', help_text='Keyword arguments, a JSON object: {"verbose": true}')

    class Meta:
        model = PeriodicTask
        fields = ["name", "task", "enabled", "description", "schedule", "start_time", "one_off", "args", "kwargs",
                  "queue", "priority", "expires", "expire_seconds"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = registry.names()
        current = self.instance.task if self.instance.pk else ""
        choices = [("", "---------")] + [(name, name) for name in names]
        if current and current not in names:  # keep showing a task whose code is gone, so it can be fixed
            choices.append((current, f"{current} (not registered)"))
        task_field = cast(forms.ChoiceField, self.fields["task"])
        schedule_field = cast(forms.ChoiceField, self.fields["schedule"])
        task_field.choices = choices
        schedule_field.choices = [("", "---------"), *schedule_choices()]
        schedule_field.help_text = self._add_links()
        model = self.instance.schedule_model if self.instance.pk else None
        if model is not None:
            self.initial["schedule"] = f"{type(model).__name__.removesuffix('Schedule').lower()}:{model.pk}"

    @staticmethod
    def _add_links() -> str:
        # Django's add-another popups (RelatedObjectLookups.js) fill the element named by the
        # link's id: a hidden select per kind, copied into the picker by schedule_picker.js.
        links = format_html_join(" ", (
            '<a class="related-widget-wrapper-link add-related" id="add_id_schedule_{}" data-popup="yes" '
            'href="{}?_to_field=id&amp;_popup=1" title="Add another {} schedule">'
            '<img src="{}" alt="" width="20" height="20"> {}</a>'
            '<select id="id_schedule_{}" data-schedule-kind="{}" data-schedule-group="{}" hidden></select>'
        ), (
            (kind, reverse(f"admin:djq_{model.__name__.lower()}_add"), kind, static("admin/img/icon-addlink.svg"),
             kind, kind, kind, kind.capitalize())
            for kind, model in SCHEDULE_MODELS.items()))
        return format_html("Exactly one schedule. None fits? Add one: {}", links)

    class Media:
        js = ("djq/schedule_picker.js",)

    def clean_task(self) -> str:
        name: str = self.cleaned_data["task"]
        if name not in registry:
            raise ValidationError(f"Task {name!r} is not registered in this process.")
        return name

    def clean_schedule(self) -> Any:
        kind, _, pk = str(self.cleaned_data["schedule"]).partition(":")
        model = SCHEDULE_MODELS.get(kind)
        row = model.objects.filter(pk=pk).first() if model is not None and pk.isdigit() else None
        if row is None:
            raise ValidationError("Choose a schedule from the list.")
        for name in SCHEDULE_FIELDS:
            setattr(self.instance, name, row if name == kind else None)
        return row
