"""Forms for starting a replay and for a regression case's expectations."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from agentops.models import PromptVersion, Run
from agentops.runtime.tools import TOOLS
from evals.models import RegressionCase

REPLAY_MODE_CHOICES = [
    (Run.Mode.EXACT, "Replay exactly"),
    (Run.Mode.RERUN, "Re-run"),
    (Run.Mode.FORK, "Fork from step"),
]


class ReplayForm(forms.Form):
    mode = forms.ChoiceField(choices=REPLAY_MODE_CHOICES)
    from_step = forms.IntegerField(label="From step", min_value=1, required=False)
    model = forms.CharField(
        max_length=100, required=False, help_text="blank: the original run's model"
    )
    prompt_version = forms.ModelChoiceField(
        queryset=PromptVersion.objects.all(),
        required=False,
        empty_label="the original run's prompt",
        to_field_name="name",
    )
    live = forms.BooleanField(
        required=False, label="Live: execute side effects for real (not a dry run)"
    )

    def clean(self):
        data = super().clean()
        if data.get("mode") == Run.Mode.FORK and not data.get("from_step"):
            raise forms.ValidationError("Choose the step to fork from.")
        return data


class JsonListField(forms.JSONField):
    """A JSON list typed in a textarea, shown back indented."""

    widget = forms.Textarea(attrs={"rows": 8, "class": "mono", "spellcheck": "false"})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value if value is not None else [], indent=2, ensure_ascii=False)


STATUS_CHOICES = [("", "any"), *[(s, s) for s in Run.FINAL_STATUSES]]


class RegressionCaseForm(forms.ModelForm):
    expected_tool_calls = JsonListField(
        required=False,
        help_text='A list of calls that must happen, each {"tool": name, "args": {key: value}}; '
        "a call matches when it has at least these arguments.",
    )
    forbidden_tools = forms.MultipleChoiceField(
        choices=[(name, name) for name in TOOLS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tools that must not be called at all.",
    )
    expected_status = forms.ChoiceField(
        choices=STATUS_CHOICES, required=False, label="Expected final status"
    )

    recorded_tool_results = JsonListField(
        required=False,
        label="Recorded tool results",
        help_text='What the read tools answer when the case runs, each {"tool": name, '
        '"input": {arguments as resolved}, "result": {...}}; a result with an "error" key '
        "is handed to the model as an error. Calls not listed ask the shop as it was.",
    )

    class Meta:
        model = RegressionCase
        fields = [
            "name",
            "expected_tool_calls",
            "forbidden_tools",
            "expected_status",
            "recorded_tool_results",
            "notes",
            "active",
        ]

    def clean_expected_tool_calls(self) -> list[dict]:
        value = self.cleaned_data["expected_tool_calls"] or []
        if not isinstance(value, list):
            raise forms.ValidationError("Give a JSON list of calls, like [] or [{...}].")
        cleaned = []
        for n, item in enumerate(value, start=1):
            if not isinstance(item, dict) or set(item) - {"tool", "args"}:
                raise forms.ValidationError(
                    f'Call {n}: give an object with "tool" and "args" only.'
                )
            tool, args = item.get("tool"), item.get("args", {})
            if tool not in TOOLS:
                raise forms.ValidationError(
                    f"Call {n}: unknown tool {tool!r}; the tools are {', '.join(TOOLS)}."
                )
            if not isinstance(args, dict):
                raise forms.ValidationError(f'Call {n}: "args" must be an object.')
            cleaned.append({"tool": tool, "args": args})
        return cleaned

    def clean_recorded_tool_results(self) -> list[dict]:
        value = self.cleaned_data["recorded_tool_results"] or []
        if not isinstance(value, list):
            raise forms.ValidationError("Give a JSON list of results, like [] or [{...}].")
        for n, item in enumerate(value, start=1):
            if not isinstance(item, dict) or set(item) != {"tool", "input", "result"}:
                raise forms.ValidationError(
                    f'Result {n}: give an object with "tool", "input" and "result".'
                )
            tool = TOOLS.get(item["tool"])
            if tool is None or tool.side_effect:
                readers = ", ".join(name for name, t in TOOLS.items() if not t.side_effect)
                raise forms.ValidationError(
                    f"Result {n}: {item['tool']!r} is not a read tool ({readers})."
                )
            if not isinstance(item["input"], dict) or not isinstance(item["result"], dict):
                raise forms.ValidationError(f'Result {n}: "input" and "result" must be objects.')
        return value

    def clean(self):
        data = super().clean()
        calls, forbidden = data.get("expected_tool_calls"), data.get("forbidden_tools") or []
        if calls is None:
            return data
        both = sorted({c["tool"] for c in calls} & set(forbidden))
        if both:
            raise forms.ValidationError(f"{', '.join(both)} cannot be both expected and forbidden.")
        if not calls and not forbidden and not data.get("expected_status"):
            raise forms.ValidationError(
                "Expect something: a tool call, a forbidden tool or a final status; "
                "a case that expects nothing can never fail."
            )
        return data
