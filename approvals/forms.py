from django import forms


class ApproveForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, strip=True)


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        strip=True,
        error_messages={"required": "Say why the action is rejected: the agent reads it."},
    )
