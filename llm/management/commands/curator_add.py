"""`python manage.py curator_add USERNAME [--create] [--password-from-env VAR]`: make a user a
curator (staff and a member of the ``curators`` group, which is created or reset to exactly the
review desk's permissions first). Bad input prints one line and exits 2, writing nothing."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from llm.services.curators import CURATORS_GROUP, CuratorError, curator_add


class Command(BaseCommand):
    help = "Make USERNAME staff and a member of the curators group (review desk permissions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create", action="store_true", help="create the user if it does not exist"
        )
        parser.add_argument(
            "--password-from-env",
            metavar="VAR",
            help="set the password from this environment variable (never from the command line)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = None
        variable = options["password_from_env"]
        if variable:
            password = os.environ.get(variable)
            if not password:
                self.stderr.write(f"error: --password-from-env: {variable} is not set or empty")
                sys.exit(2)
        try:
            added = curator_add(
                username=options["username"], create=options["create"], password=password
            )
        except CuratorError as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(2)
        user = added.user
        verb = "created" if added.created else "updated"
        notes = []
        if added.password_set:
            notes.append(f"password set from {variable}")
        elif not user.has_usable_password():
            notes.append("no usable password: set one with `python manage.py changepassword`")
        if not user.is_active:
            notes.append("the account is inactive and cannot log in")
        extra = f" ({'; '.join(notes)})" if notes else ""
        self.stdout.write(
            f"{verb} {user.get_username()}: staff, member of {CURATORS_GROUP!r}{extra}"
        )
