"""A password hasher for the test process: Django's PBKDF2-SHA256 with 1,000 iterations.

Django's default of 1,000,000 iterations costs 0.3 s per hash on an idle core and about 0.8 s
on the loaded 2-core machine, and the suite hashes hundreds of passwords (every ``make_user``,
``curator_add`` and admin login). Django advises a fast hasher in tests. This one keeps the
``pbkdf2_sha256$<iterations>$<salt>$<hash>`` format: the iteration count is part of the hash,
so the subprocesses a test starts (gunicorn, the stack), which use the default hashers, still
verify these passwords (and upgrade them to the full count on a successful login).
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2-SHA256 at 1,000 iterations; same algorithm name as the default hasher."""

    iterations = 1_000
