"""Tenants through the API, on real Linux users and directories (the tests run as root) beneath the
test's own directory: create -> suspend -> resume -> delete, and what each refuses."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import problem_of
from tests.helpers import STRONG, TEST_UID_MAX, TEST_UID_MIN, bearer, login, make_user, signed_in
from wcp360.runtime import Runtime
from wcp360.system.cgroups import TenantCgroups, read_layout


def _name() -> str:
    return f"wt{uuid.uuid4().hex[:10]}"


def _reseller(client: TestClient, rt: Runtime, username: str = "res") -> dict[str, str]:
    return signed_in(client, rt, username, ["reseller"]).headers


def _ours() -> set[tuple[str, int]]:
    """The accounts in this session's tenant id range (other sessions may run beside it)."""
    return {(e.pw_name, e.pw_uid) for e in pwd.getpwall() if TEST_UID_MIN <= e.pw_uid <= TEST_UID_MAX}


def _expiry(name: str) -> str:
    """The account's expiry field in /etc/shadow."""
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[7]
    raise KeyError(name)


def _sleeper(uid: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"], user=uid, group=uid)


def test_create_suspend_resume_delete(client: TestClient, rt: Runtime, tmp_path: Path) -> None:
    reseller = _reseller(client, rt)
    customer = {"username": "customer", "email": "c@example.test", "password": STRONG, "roles": ["tenant"]}
    assert client.post("/api/v1/users", json=customer, headers=reseller).status_code == 201
    name = _name()
    created = client.post("/api/v1/tenants", json={"name": name, "member": "customer"}, headers=reseller)
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert tenant["status"] == "active"
    # Root: a real account; only what this host cannot enforce yet is listed.
    assert not [d for d in tenant["degraded"] if "not root" in d]
    assert "disk: not enforced yet (filesystem quotas)" in tenant["degraded"]
    cgroups = TenantCgroups(read_layout())
    groups = cgroups.groups(name)
    assert groups and all(path.is_dir() for path in groups.values())
    # A Linux user and group of that name, in the configured range, no shell, no password.
    entry = pwd.getpwnam(name)
    assert TEST_UID_MIN <= entry.pw_uid <= TEST_UID_MAX and entry.pw_uid == tenant["uid"]
    assert grp.getgrgid(entry.pw_gid).gr_name == name
    assert entry.pw_shell == "/usr/sbin/nologin"
    home = Path(tenant["home"])
    assert home == tmp_path / "srv" / "www" / name
    info = os.lstat(home)
    # nginx's group passes through the home (0710) to public/ (setgid, group-readable), no further.
    web = pwd.getpwnam("www-data").pw_gid
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (entry.pw_uid, web, 0o710)
    assert {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_gid) for p in home.iterdir()} == {
        "public": (0o2750, web),
        "logs": (0o750, entry.pw_gid),
        "tmp": (0o700, entry.pw_gid),
    }
    # Suspended: its processes stop (by uid, and whatever runs in its cgroups under another uid),
    # its account cannot sign in, the Linux account is expired.
    sleeper = _sleeper(entry.pw_uid)
    other_uid = subprocess.Popen(["sleep", "600"])
    cgroups.place(name, other_uid.pid)
    suspended = client.post(f"/api/v1/tenants/{tenant['id']}/suspend", headers=reseller)
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert sleeper.wait() == -9 and other_uid.wait() == -9
    refused = client.post("/api/v1/auth/login", json={"username": "customer", "password": STRONG})
    assert refused.status_code in (401, 403)
    assert _expiry(name) == "1"  # days since 1970: expired, so PAM refuses su, ssh, cron
    # Resumed: the account signs in again.
    resumed = client.post(f"/api/v1/tenants/{tenant['id']}/resume", headers=reseller)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    login(client, "customer")
    assert _expiry(name) == ""
    # Delete asks for the name again; without it nothing changes.
    wrong = client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": "nope"}, headers=reseller)
    assert wrong.status_code == 422 and home.is_dir()
    (home / "public" / "index.html").write_text("hello")
    deleted = client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": name}, headers=reseller)
    assert deleted.status_code == 204, deleted.text
    assert not home.exists()
    assert not any(path.exists() for path in groups.values())
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    with pytest.raises(KeyError):
        grp.getgrnam(name)
    archives = list((tmp_path / "tenant-archives").glob(f"{name}-*.tar.gz"))
    assert len(archives) == 1 and stat.S_IMODE(archives[0].stat().st_mode) == 0o600
    with tarfile.open(archives[0]) as archive:
        assert archive.extractfile(f"{name}/public/index.html").read() == b"hello"  # type: ignore[union-attr]
    assert client.get(f"/api/v1/tenants/{tenant['id']}", headers=reseller).status_code == 404


@pytest.mark.parametrize(
    "name",
    ["root", "wcp360", "nobody", "daemon", "Upper", "a;rm -rf /", "../etc", "a/b", "x" * 33, "-lead", "ends$", ""],
)
def test_bad_names_are_refused_and_change_nothing(client: TestClient, rt: Runtime, tmp_path: Path, name: str) -> None:
    reseller = _reseller(client, rt)
    before = _ours()
    response = client.post("/api/v1/tenants", json={"name": name}, headers=reseller)
    assert response.status_code == 422, response.text
    assert problem_of(response)["status"] == 422
    assert _ours() == before
    assert not (tmp_path / "srv" / "www").exists() or not any((tmp_path / "srv" / "www").iterdir())


def test_an_existing_system_user_is_never_taken_over(client: TestClient, rt: Runtime) -> None:
    reseller = _reseller(client, rt)
    name = _name()
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    try:
        response = client.post("/api/v1/tenants", json={"name": name}, headers=reseller)
        assert response.status_code == 409, response.text
        assert pwd.getpwnam(name).pw_gecos == ""  # untouched
    finally:
        subprocess.run(["userdel", name], check=True)


def test_a_symlink_planted_as_the_home_is_refused_and_the_user_undone(
    client: TestClient, rt: Runtime, tmp_path: Path
) -> None:
    reseller = _reseller(client, rt)
    name = _name()
    victim = tmp_path / "victim"
    victim.mkdir()
    root = tmp_path / "srv" / "www"
    root.mkdir(parents=True)
    (root / name).symlink_to(victim)
    response = client.post("/api/v1/tenants", json={"name": name}, headers=reseller)
    assert response.status_code == 409, response.text
    with pytest.raises(KeyError):
        pwd.getpwnam(name)  # the user made before the home was refused is removed again
    assert os.lstat(victim).st_uid == 0 and stat.S_IMODE(os.lstat(victim).st_mode) == 0o755
    assert client.get("/api/v1/tenants", headers=reseller).json()["total"] == 0


def test_delete_never_follows_a_symlink_out_of_the_home(client: TestClient, rt: Runtime, tmp_path: Path) -> None:
    reseller = _reseller(client, rt)
    name = _name()
    tenant = client.post("/api/v1/tenants", json={"name": name}, headers=reseller).json()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    home = Path(tenant["home"])
    (home / "public" / "escape").symlink_to(outside)
    (home / "public" / "file-link").symlink_to(outside / "precious")
    response = client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": name}, headers=reseller)
    assert response.status_code == 204, response.text
    assert (outside / "precious").read_text() == "keep me"
    archive = next((tmp_path / "tenant-archives").glob(f"{name}-*.tar.gz"))
    with tarfile.open(archive) as tar:
        link = tar.getmember(f"{name}/public/escape")
        assert link.issym() and "precious" not in {Path(m.name).name for m in tar.getmembers() if m.isfile()}


def test_resellers_see_only_their_own_tenants(client: TestClient, rt: Runtime) -> None:
    first = _reseller(client, rt)
    second = _reseller(client, rt, "res2")
    tenant = client.post("/api/v1/tenants", json={"name": _name()}, headers=first).json()
    assert client.get("/api/v1/tenants", headers=second).json()["total"] == 0
    for method, path in (
        ("get", f"/api/v1/tenants/{tenant['id']}"),
        ("post", f"/api/v1/tenants/{tenant['id']}/suspend"),
        ("delete", f"/api/v1/tenants/{tenant['id']}?confirm={tenant['name']}"),
    ):
        assert client.request(method, path, headers=second).status_code == 403
    assert client.get(f"/api/v1/tenants/{tenant['id']}", headers=first).json()["status"] == "active"
    # A reseller cannot hand a tenant to someone else, nor make another reseller's customer a member.
    make_user(rt, "theirs", ["tenant"])
    assert client.post("/api/v1/tenants", json={"name": _name(), "owner": "res2"}, headers=first).status_code == 403


def test_tenant_accounts_cannot_create_tenants(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "customer", ["tenant"])
    customer = bearer(login(client, "customer")["access_token"])
    response = client.post("/api/v1/tenants", json={"name": _name()}, headers=customer)
    assert response.status_code == 403
    assert not _ours()


def test_limits_are_stored_and_bad_ones_refused(client: TestClient, rt: Runtime) -> None:
    reseller = _reseller(client, rt)
    tenant = client.post(
        "/api/v1/tenants", json={"name": _name(), "limits": {"memory": "512MiB", "processes": 64}}, headers=reseller
    ).json()
    assert tenant["limits"]["memory"] == 512 * 1024**2 and tenant["limits"]["processes"] == 64
    changed = client.patch(f"/api/v1/tenants/{tenant['id']}/limits", json={"cpu_percent": 50}, headers=reseller)
    assert changed.status_code == 200 and changed.json()["limits"]["cpu_percent"] == 50
    assert changed.json()["limits"]["processes"] == 64
    bad = client.patch(f"/api/v1/tenants/{tenant['id']}/limits", json={"processes": 0}, headers=reseller)
    assert bad.status_code == 422
    assert client.get(f"/api/v1/tenants/{tenant['id']}", headers=reseller).json()["limits"]["cpu_percent"] == 50


def test_enabling_an_account_does_not_undo_its_tenants_suspension(client: TestClient, rt: Runtime) -> None:
    reseller = _reseller(client, rt)
    customer = {"username": "customer", "email": "c@example.test", "password": STRONG, "roles": ["tenant"]}
    member = client.post("/api/v1/users", json=customer, headers=reseller).json()
    tenant = client.post("/api/v1/tenants", json={"name": _name(), "member": "customer"}, headers=reseller).json()
    assert client.post(f"/api/v1/tenants/{tenant['id']}/suspend", headers=reseller).status_code == 200
    enabled = client.post(f"/api/v1/users/{member['id']}/enable", headers=reseller)
    assert enabled.status_code == 409 and "suspended" in problem_of(enabled)["detail"]
    assert client.post("/api/v1/auth/login", json={"username": "customer", "password": STRONG}).status_code != 200
    assert client.post(f"/api/v1/tenants/{tenant['id']}/resume", headers=reseller).status_code == 200
    login(client, "customer")


def test_one_owner_cannot_take_more_tenants_than_allowed(client: TestClient, rt: Runtime) -> None:
    reseller = _reseller(client, rt)
    rt.tenants.config = rt.tenants.config.model_copy(update={"max_per_owner": 1})
    assert client.post("/api/v1/tenants", json={"name": _name()}, headers=reseller).status_code == 201
    before = _ours()
    refused = client.post("/api/v1/tenants", json={"name": _name()}, headers=reseller)
    assert refused.status_code == 409 and "tenants.max_per_owner" in problem_of(refused)["detail"]
    assert _ours() == before  # refused before the agent made anything
