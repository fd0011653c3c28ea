"""Password policy (seed 001) and argon2id hashing."""

from __future__ import annotations

import string

import pytest
from argon2 import PasswordHasher as RawHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from wcp360.config.security import Argon2Config, PasswordPolicy
from wcp360.errors import InvalidInput
from wcp360.identity.passwords import PasswordHasher, check_password, common_passwords, policy_violations

POLICY = PasswordPolicy()
SYMBOLS = "!#$%&*+-.:;=?@^_~"


def test_common_list_is_large_and_case_insensitive() -> None:
    assert len(common_passwords()) >= 10_000
    for password in ("Password123!", "PASSWORD", "Qwerty123!", "Dragon2024!", "!!Monkey99"):
        assert "is a commonly used password" in policy_violations(POLICY, password), password


def test_personal_information_is_refused() -> None:
    problems = policy_violations(POLICY, "xXJohnSmith99!!", "johnsmith", "jsmith@example.com")
    assert "must not contain your username" in problems
    problems = policy_violations(POLICY, "Jsmith-R0cks-Hard", "someone", "jsmith@example.com")
    assert "must not contain your email address" in problems


def test_default_minimum_is_twelve_and_config_wins() -> None:
    assert "must be at least 12 characters" in policy_violations(POLICY, "Xy7!kq2#Lm9")
    assert policy_violations(PasswordPolicy(min_length=8), "Xy7!kq2#Lm9") == []


def test_check_password_raises_with_every_violation() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_password(POLICY, "short")
    assert caught.value.extra["violations"] == policy_violations(POLICY, "short")
    assert len(caught.value.extra["violations"]) >= 3


@st.composite
def candidate_passwords(draw: st.DrawFn) -> str:
    alphabet = st.sampled_from(string.ascii_letters + string.digits + SYMBOLS + "é ")
    return "".join(draw(st.lists(alphabet, min_size=0, max_size=40)))


@given(candidate_passwords())
def test_every_accepted_password_meets_every_rule(password: str) -> None:
    if policy_violations(POLICY, password, "alice", "alice@example.com"):
        return
    assert 12 <= len(password) <= 128
    assert any(c.isupper() for c in password)
    assert any(c.islower() for c in password)
    assert any(c.isdigit() for c in password)
    assert not password.isalnum()
    assert password.lower() not in common_passwords()
    assert "alice" not in password.lower()


ALPHA_COMMON = sorted(w for w in common_passwords() if w.isalpha() and w.isascii() and len(w) >= 4)


@given(st.sampled_from(ALPHA_COMMON), st.sampled_from(["", "1", "123", "!", "2024!"]), st.sampled_from(["", "#", "1"]))
def test_decorated_common_passwords_are_refused(word: str, suffix: str, prefix: str) -> None:
    assert "is a commonly used password" in policy_violations(POLICY, prefix + word.capitalize() + suffix)


@given(st.text(min_size=0, max_size=200))
@settings(max_examples=200)
def test_policy_never_crashes(password: str) -> None:
    assert isinstance(policy_violations(POLICY, password, "user", "user@x.test"), list)


def test_argon2id_with_owasp_parameters() -> None:
    hasher = PasswordHasher(Argon2Config())
    stored = hasher.hash("Str0ng!Passphrase#42")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "Str0ng!Passphrase#42")
    assert not hasher.verify(stored, "Str0ng!Passphrase#43")
    assert not hasher.verify("not-a-hash", "anything")


def test_parameter_change_asks_for_rehash() -> None:
    old = RawHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert PasswordHasher(Argon2Config()).needs_rehash(old)
    assert not PasswordHasher(Argon2Config(time_cost=1, memory_kib=8192)).needs_rehash(old)


def test_unknown_user_path_still_runs_argon2() -> None:
    hasher = PasswordHasher(Argon2Config(time_cost=1, memory_kib=8192))
    before = hasher.verifications
    assert hasher.verify(None, "whatever") is False
    assert hasher.verifications == before + 1
