"""Submit a ticket from the shell; its run is enqueued for a worker."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from agentops.models import Ticket
from agentops.services import ticket_submit


class Command(BaseCommand):
    help = "Submit a support ticket and print its run id."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="The customer's email address")
        parser.add_argument("--subject", required=True)
        parser.add_argument("--body", required=True, help="The customer's message")
        parser.add_argument("--external-id", default=None, help="Idempotency: same id, same run")

    def handle(self, *args, email: str, subject: str, body: str, external_id: str | None, **opts):
        for name, value in (("email", email), ("subject", subject), ("body", body)):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                # Bytes that were not UTF-8 on the command line reach us as lone surrogates.
                raise CommandError(f"--{name} is not valid UTF-8 text") from exc
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--email: {exc.messages[0]}") from exc
        for name, value, limit in (("subject", subject, 300), ("body", body, 20_000)):
            if not value.strip():
                raise CommandError(f"--{name} must not be empty")
            if len(value) > limit:
                raise CommandError(f"--{name} is longer than {limit} characters")
        submission = ticket_submit(
            customer_email=email,
            subject=subject.strip(),
            body=body.strip(),
            external_id=external_id,
            source=Ticket.Source.COMMAND,
        )
        verb = "Submitted" if submission.created else "Already submitted"
        self.stdout.write(f"{verb}: ticket {submission.ticket.code}")
        self.stdout.write(f"run {submission.run.code} ({submission.run.status})")
