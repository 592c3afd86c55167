from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """The pending-approvals count shown in the navigation on every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    from approvals.models import PendingAction

    return {"nav_pending_count": PendingAction.objects.filter(status="pending").count()}
