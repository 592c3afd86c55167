"""A run's root span is written once, finished, when the run ends (issue 8).

The runtime wrote it open when the run began and updated it at the end. A run
begun that way and not ended yet has an open root row, which its end would now
write again: those rows go, and the trace pages show such a run's root open, as
read from the run, until its end writes it. Going back writes them open again.
"""

from django.db import migrations

FINAL_STATUSES = ("resolved", "escalated", "failed")


def _unfinished_runs(apps):
    Run = apps.get_model("agentops", "Run")
    return Run.objects.exclude(status__in=FINAL_STATUSES).filter(started_at__isnull=False)


def open_roots_delete(apps, schema_editor):
    Span = apps.get_model("traces", "Span")
    Span.objects.filter(
        kind="run", ended_at__isnull=True, run__in=_unfinished_runs(apps)
    ).delete()


def open_roots_write(apps, schema_editor):
    Span = apps.get_model("traces", "Span")
    have_root = Span.objects.filter(kind="run").values("run_id")
    Span.objects.bulk_create(
        Span(
            run=run,
            span_id=run.trace_id[:16],
            parent_span_id="",
            kind="run",
            name="run",
            step=0,
            status="started",
            input={"ticket": str(run.ticket.code), "subject": run.ticket.subject},
            attributes={},
            started_at=run.started_at,
        )
        for run in _unfinished_runs(apps).exclude(pk__in=have_root).select_related("ticket")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0013_span_name_run_tool_calls"),
    ]

    operations = [migrations.RunPython(open_roots_delete, open_roots_write, elidable=True)]
