"""The one policy function: wildcards, deny by default, ownership, sharing, scopes, 2FA state (hypothesis)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wcp360.authz import Policy, Principal, Resource, covers
from wcp360.authz.policy import MFA_PENDING_PERMISSIONS, SELF_PERMISSIONS, matches
from wcp360.authz.resources import MODULES
from wcp360.config.rbac import RbacFile, ResourceRule, Role
from wcp360.errors import Forbidden

RESOURCES = ["modules", "users", "tasks", "snapshots", "metrics", "system", "scheduler"]
ACTIONS = ["read", "create", "update", "delete", "execute", "restore"]
permissions = st.builds(lambda r, a: f"{r}:{a}", st.sampled_from(RESOURCES), st.sampled_from(ACTIONS))
patterns = st.one_of(permissions, st.sampled_from(RESOURCES).map(lambda r: f"{r}:*"))
POLICY = Policy(RbacFile())


def principal(roles: tuple[str, ...], user: uuid.UUID | None = None, **extra: object) -> Principal:
    return Principal(user_id=user or uuid.uuid4(), username="p", roles=roles, via="session", **extra)  # type: ignore[arg-type]


@given(st.lists(patterns, max_size=6), permissions)
def test_decide_matches_the_definition(granted: list[str], wanted: str) -> None:
    policy = Policy(RbacFile(roles={"r": Role(permissions=granted)}, resources={}))
    expected = any(p == wanted or (p.endswith(":*") and p.split(":")[0] == wanted.split(":")[0]) for p in granted)
    assert policy.decide(principal(("r",)), wanted).allowed == expected


@given(st.text(min_size=1, max_size=12), permissions)
def test_unknown_roles_grant_nothing(role: str, wanted: str) -> None:
    if role in POLICY.rbac.roles:
        return
    assert not POLICY.decide(principal((role,)), wanted).allowed


@given(st.lists(patterns, max_size=6), st.lists(patterns, min_size=1, max_size=6), permissions)
def test_token_scope_never_widens(granted: list[str], scopes: list[str], wanted: str) -> None:
    policy = Policy(RbacFile(roles={"r": Role(permissions=granted)}, resources={}))
    scoped = principal(("r",), scopes=tuple(scopes))
    if policy.decide(scoped, wanted).allowed:
        assert covers(granted, wanted) and covers(scopes, wanted)
    for held in policy.effective(scoped):
        assert covers([*granted, *SELF_PERMISSIONS], held)


@given(permissions)
def test_mfa_pending_allows_only_enrolment(wanted: str) -> None:
    pending = principal(("admin",), mfa_pending=True)
    assert not POLICY.decide(pending, wanted).allowed
    for allowed in MFA_PENDING_PERMISSIONS:
        assert POLICY.decide(pending, allowed).allowed


@given(st.sampled_from(ACTIONS), st.booleans(), st.booleans(), st.booleans())
def test_ownership_and_sharing(action: str, is_owner: bool, shared: bool, sharing_allowed: bool) -> None:
    rbac = RbacFile(
        roles={"dev": Role(permissions=["modules:*"])},
        resources={"modules": ResourceRule(ownership=True, sharing=sharing_allowed)},
    )
    policy = Policy(rbac)
    me, someone = uuid.uuid4(), uuid.uuid4()
    share = frozenset({(str(me), action)}) if shared else frozenset()
    resource = Resource("modules", id="m1", owner_id=me if is_owner else someone, shared_with=share)
    allowed = policy.decide(principal(("dev",), me), f"modules:{action}", resource).allowed
    assert allowed == (is_owner or (shared and sharing_allowed))


def test_role_shares_apply_to_holders_of_the_role() -> None:
    policy = Policy(RbacFile())
    resource = Resource("modules", id="m", owner_id=uuid.uuid4(), shared_with=frozenset({("role:operator", "execute")}))
    assert policy.decide(principal(("operator",)), "modules:execute", resource).allowed
    assert not policy.decide(principal(("operator",)), "modules:read", resource).allowed


def test_tasks_are_never_shared_by_default() -> None:
    me, owner = uuid.uuid4(), uuid.uuid4()
    resource = Resource("tasks", id="t", owner_id=owner, shared_with=frozenset({(str(me), "read")}))
    assert not POLICY.decide(principal(("operator",), me), "tasks:read", resource).allowed


def test_admins_reach_every_owner() -> None:
    resource = Resource("modules", id="m", owner_id=uuid.uuid4())
    assert POLICY.decide(principal(("admin",)), "modules:delete", resource).allowed
    assert POLICY.scope(principal(("admin",)), MODULES).owner is None
    me = uuid.uuid4()
    assert POLICY.scope(principal(("developer",), me), MODULES).owner == me


def test_unlisted_resource_types_are_owned() -> None:
    policy = Policy(RbacFile(roles={"r": Role(permissions=["widgets:*"])}, resources={}))
    me = uuid.uuid4()
    assert not policy.decide(
        principal(("r",), me), "widgets:read", Resource("widgets", id="w", owner_id=uuid.uuid4())
    ).allowed
    assert policy.decide(principal(("r",), me), "widgets:read", Resource("widgets", id="w", owner_id=me)).allowed


def test_managing_needs_covering_the_target() -> None:
    target = Resource("users", id="u", grants=POLICY.role_permissions(["admin"]))
    reseller = principal(("reseller",))
    decision = POLICY.decide(reseller, "users:update", target)
    assert not decision.allowed and "system:*" in decision.missing


def test_require_records_denials(monkeypatch: pytest.MonkeyPatch) -> None:
    from wcp360 import audit, metrics

    seen: list[str] = []
    monkeypatch.setattr(audit, "record", lambda action, **kw: seen.append(kw["details"]["permission"]))
    before = metrics.AUTHORIZATION_DENIALS.labels(permission="users:delete")._value.get()
    with pytest.raises(Forbidden):
        POLICY.require(principal(("viewer",)), "users:delete")
    assert seen == ["users:delete"]
    assert metrics.AUTHORIZATION_DENIALS.labels(permission="users:delete")._value.get() == before + 1


def test_matches_is_exact_on_the_resource() -> None:
    assert matches("modules:*", "modules:read")
    assert not matches("modules:*", "modulesx:read")
    assert not matches("modules:read", "modules:readx")


@given(st.text(min_size=1, max_size=80))
def test_denial_metric_labels_come_from_a_bounded_set(requested: str) -> None:
    # A caller chooses the requested permission (an API token's scopes): its label must not be free.
    label = POLICY.metric_label(requested)
    resource, _, action = label.partition(":")
    assert label == "other" or (resource in POLICY._label_resources and action in POLICY._label_actions)
