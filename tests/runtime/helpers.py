"""Ledger rows the tests put in place of an earlier task's or another run's."""

from agentops.models import Effect
from agentops.runtime import ledger


def refund_in_ledger(*, run, resolved, refund_id: str) -> Effect:
    """A succeeded refund of the resolved issue_refund call, under the key the run would
    use for it (the ticket and the order)."""
    args = resolved.args
    return Effect.objects.create(
        idempotency_key=f"refund:{run.ticket.code}:{args['order_id']}",
        ticket_id=run.ticket_id,
        run=run,
        tool="issue_refund",
        request=args,
        request_hash=ledger.request_hash(args),
        status=Effect.Status.SUCCEEDED,
        attempts=1,
        result={
            "status": "succeeded",
            "refund_id": refund_id,
            "order_id": args["order_id"],
            "amount_cents": args["amount_cents"],
            "currency": args["currency"],
        },
    )
