"""Password hashing (argon2id) and the password policy (seed 001 / seed 003)."""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from wcp360.config.security import Argon2Config, PasswordPolicy
from wcp360.errors import InvalidInput

# Characters stripped from both ends before the common-list check, so "Password1!" is caught.
_DECORATION = re.compile(r"^[\d\W_]+|[\d\W_]+$")
# The stored hash of an account that signs in only through a directory or identity provider: no
# password matches it, and checking one costs the same argon2 run as for a real hash.
NO_PASSWORD = "!external"  # noqa: S105 - a marker, not a secret


class PasswordHasher:
    def __init__(self, params: Argon2Config) -> None:
        self._hasher = Argon2Hasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # Verified against when the username is unknown, so that path costs one argon2 run too.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self.verifications = 0

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        self.verifications += 1
        if stored == NO_PASSWORD:
            stored = None
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        if stored == NO_PASSWORD:
            return False
        return self._hasher.check_needs_rehash(stored)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("wcp360.identity").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def policy_violations(policy: PasswordPolicy, password: str, username: str = "", email: str = "") -> list[str]:
    """Every rule the password breaks, in a stable order (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < policy.min_length:
        problems.append(f"must be at least {policy.min_length} characters")
    if len(password) > policy.max_length:
        problems.append(f"must be at most {policy.max_length} characters")
    if policy.require_uppercase and not any(c.isupper() for c in password):
        problems.append("must contain an uppercase letter")
    if policy.require_lowercase and not any(c.islower() for c in password):
        problems.append("must contain a lowercase letter")
    if policy.require_numbers and not any(c.isdigit() for c in password):
        problems.append("must contain a digit")
    if policy.require_symbols and all(c.isalnum() for c in password):
        problems.append("must contain a symbol")
    lowered = password.lower()
    if policy.block_common:
        core = _DECORATION.sub("", lowered)
        if lowered in common_passwords() or (len(core) >= 4 and core in common_passwords()):
            problems.append("is a commonly used password")
    if policy.block_personal_info:
        local_part = email.partition("@")[0].lower()
        for label, value in (("username", username.lower()), ("email address", local_part)):
            if len(value) >= 3 and value in lowered:
                problems.append(f"must not contain your {label}")
    return problems


def check_password(policy: PasswordPolicy, password: str, username: str = "", email: str = "") -> None:
    problems = policy_violations(policy, password, username, email)
    if problems:
        raise InvalidInput("password " + "; ".join(problems), violations=problems)
