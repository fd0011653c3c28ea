"""A real OpenLDAP server (Debian's `slapd`) on loopback for the LDAP sign-in tests.

Each start makes a directory of its own: a slapd.conf, a test CA and server certificate, and a DIT
loaded with `slapadd` before the daemon starts (`ou=people` with alice, bob and carol; `ou=groups`
with `ops` (alice, bob) and `admins` (alice, carol); a service account allowed to search and
nothing else). slapd listens on `ldap://` (StartTLS offered) and `ldaps://`, both on 127.0.0.1.
The ppolicy overlay is loaded so that an administrator's lock (`pwdAccountLockedTime`) refuses
the bind, as a directory does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap3

from tests.pki import free_port, make_ca, make_leaf

READY_TIMEOUT = 60.0
SUFFIX = "dc=example,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests"
SERVICE_DN = f"cn=wcp360,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret-for-tests"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PASSWORDS = {"alice": "Alice-directory-pw1", "bob": "Bob-directory-pw2", "carol": "Carol-directory-pw3"}

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {dir}/db
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{suffix}"
# The service account may search people and groups and read what sign-in needs, never passwords;
# a user may bind as itself; nobody else sees anything.
access to attrs=userPassword
    by dn.exact="{service_dn}" none
    by anonymous auth
    by self auth
    by * none
access to dn.subtree="{suffix}"
    by dn.exact="{service_dn}" read
    by self read
    by * none
"""


def _ldif() -> str:
    people = []
    for uid, mail, name in [
        ("alice", "alice@example.test", "Alice Admin"),
        ("bob", "bob@example.test", "Bob Builder"),
        ("carol", "carol@example.test", "Carol Locked"),
    ]:
        people.append(
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name.split()[1]}\n"
            f"mail: {mail}\nuserPassword: {PASSWORDS[uid]}\n"
        )
    groups = [
        f"dn: cn=ops,{GROUPS}\nobjectClass: groupOfNames\ncn: ops\n"
        f"member: uid=alice,{PEOPLE}\nmember: uid=bob,{PEOPLE}\n",
        f"dn: cn=admins,{GROUPS}\nobjectClass: groupOfNames\ncn: admins\n"
        f"member: uid=alice,{PEOPLE}\nmember: uid=carol,{PEOPLE}\n",
    ]
    base = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: ou=policies,{SUFFIX}\nobjectClass: organizationalUnit\nou: policies\n",
        f"dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: person\nobjectClass: pwdPolicy\ncn: default\nsn: policy\n"
        "pwdAttribute: userPassword\npwdLockout: TRUE\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: wcp360\n"
        f"userPassword: {SERVICE_PASSWORD}\n",
    ]
    return "\n".join(base + people + groups)


@dataclass
class Slapd:
    url: str  # ldap://127.0.0.1:port (StartTLS offered)
    ldaps_url: str
    ca_file: Path
    directory: Path
    pid: int

    def admin(self) -> ldap3.Connection:
        """A connection bound as the directory's root, to change the DIT during a test."""
        return ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)

    def lock(self, uid: str) -> None:
        """An administrator's lock (ppolicy): the bind is refused from now on."""
        with self.admin() as conn:
            conn.modify(f"uid={uid},{PEOPLE}", {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]})
            assert conn.result["result"] == 0, conn.result

    def remove_member(self, group: str, uid: str) -> None:
        with self.admin() as conn:
            conn.modify(f"cn={group},{GROUPS}", {"member": [(ldap3.MODIFY_DELETE, [f"uid={uid},{PEOPLE}"])]})
            assert conn.result["result"] == 0, conn.result

    def delete_user(self, uid: str) -> None:
        with self.admin() as conn:
            conn.delete(f"uid={uid},{PEOPLE}")
            assert conn.result["result"] == 0, conn.result

    def add_user(self, uid: str, password: str, mail: str) -> None:
        with self.admin() as conn:
            conn.add(
                f"uid={uid},{PEOPLE}",
                ["inetOrgPerson"],
                {"uid": uid, "cn": uid, "sn": uid, "mail": mail, "userPassword": password},
            )
            assert conn.result["result"] == 0, conn.result

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        # slapd is not our child (it daemonised): wait for its pid to go.
        deadline = time.monotonic() + READY_TIMEOUT
        while _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        with ldap3.Connection(ldap3.Server(url, connect_timeout=5), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True):
            return True
    except ldap3.core.exceptions.LDAPException:
        return False


@contextlib.contextmanager
def slapd(directory: Path) -> Iterator[Slapd]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir()
    ca_path, ca_key, ca = make_ca(directory, "ldap-test-ca")
    cert, key = make_leaf(directory, "localhost", ca_key, ca)
    conf = directory / "slapd.conf"
    conf.write_text(
        _CONF.format(
            dir=directory, ca=ca_path, cert=cert, key=key, suffix=SUFFIX, root_dn=ROOT_DN,
            root_password=ROOT_PASSWORD, service_dn=SERVICE_DN,
        )
    )  # fmt: skip
    (directory / "dit.ldif").write_text(_ldif())
    subprocess.run(
        ["slapadd", "-q", "-f", str(conf), "-l", str(directory / "dit.ldif")], check=True, capture_output=True
    )
    port, ldaps_port = free_port(), free_port()
    url, ldaps_url = f"ldap://127.0.0.1:{port}", f"ldaps://127.0.0.1:{ldaps_port}"
    # slapd binds its listeners before it detaches, so once this returns the ports are taken.
    subprocess.run(["slapd", "-f", str(conf), "-h", f"{url}/ {ldaps_url}/"], check=True, capture_output=True)
    pid_file = directory / "slapd.pid"
    deadline = time.monotonic() + READY_TIMEOUT
    while not (pid_file.exists() and pid_file.read_text().strip() and _answers(url)):
        assert time.monotonic() < deadline, "slapd did not answer"
        time.sleep(0.02)
    running = Slapd(url, ldaps_url, ca_path, directory, int(pid_file.read_text()))
    try:
        yield running
    finally:
        running.stop()
