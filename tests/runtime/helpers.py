"""What the runtime tests build or read again: a run advanced as one task would, a
ledger row in place of an earlier task's or another run's, and a run's conversation
as its model spans recorded it."""

from agentops.models import Effect
from agentops.runtime import ledger
from agentops.runtime.loop import run_advance
from traces.payloads import span_input, span_output


def advance(run, worker="test-worker"):
    """Advance the run in this process as one task would, and read it back."""
    run_advance(run_id=run.pk, worker=worker)
    run.refresh_from_db()
    return run


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


def conversation_of_spans(run) -> list[dict]:
    """A model span's input is what its call sent new; its output, the model's turn
    (as the trace reads them: traces.payloads)."""
    rebuilt = []
    for span in run.spans.filter(kind="model").order_by("step"):
        span.run = run
        sent, answer = span_input(span), span_output(span)
        assert all(m["role"] == "user" for m in sent["messages"])
        rebuilt += sent["messages"]
        rebuilt.append({"role": "assistant", "content": answer["content"]})
    return rebuilt
