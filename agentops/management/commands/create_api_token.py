"""manage.py create_api_token NAME: a new token for the JSON API, printed once."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentops.services import api_token_create


class Command(BaseCommand):
    help = (
        "Create a token for the JSON API. The raw token is printed once, alone on the "
        "last line; only its hash is stored. Revoke it in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who or what uses the token, e.g. 'helpdesk-sync'")

    def handle(self, *args, name: str, **options) -> None:
        try:
            token, raw = api_token_create(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"Created API token {token.name!r} ({token.prefix}…). "
            "Copy it now: it is stored hashed and cannot be shown again."
        )
        self.stdout.write(raw)
