from django import forms

from approvals.models import PendingAction, RejectReason


class ApproveForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, strip=True)


class RejectForm(forms.Form):
    reason_code = forms.ModelChoiceField(
        queryset=RejectReason.objects.filter(active=True),
        to_field_name="code",
        error_messages={
            "required": "Choose a reason code.",
            "invalid_choice": "Choose a reason code from the list.",
        },
    )
    reason = forms.CharField(
        max_length=2000,
        strip=True,
        error_messages={"required": "Say why the action is rejected: the agent reads it."},
    )


class QueueFilterForm(forms.Form):
    """The queue's filters, from the URL. Amounts are typed in major units (12.50)."""

    tool = forms.CharField(required=False, max_length=64)
    currency = forms.CharField(required=False, max_length=3)
    min_amount = forms.DecimalField(required=False, min_value=0, decimal_places=2)
    max_amount = forms.DecimalField(required=False, min_value=0, decimal_places=2)
    older_than = forms.IntegerField(required=False, min_value=0, help_text="minutes")


class HistoryForm(forms.Form):
    q = forms.CharField(required=False, max_length=200)
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any outcome")]
        + [(s.value, s.label) for s in PendingAction.Status if s != PendingAction.Status.PENDING],
    )
