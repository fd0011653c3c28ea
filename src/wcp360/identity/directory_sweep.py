"""Ending the sessions of people who left the directory, within `recheck_interval`.

A directory account that is deleted or locked cannot sign in again (the bind fails), but the
sessions and API tokens it already holds live on in WCP360. Every `recheck_interval` the server
asks the directory about each linked account that still holds a live session or token; one that is
gone, replaced (another entry under the same name) or locked loses them all.

When the directory does not answer, nothing is revoked (an outage must not sign everybody out);
the sweep logs it, and the next round asks again.
"""

from __future__ import annotations

import threading
import uuid

import structlog
from sqlalchemy import or_, select

from wcp360 import audit
from wcp360.errors import ProviderUnavailable
from wcp360.identity.ldap_directory import Directory
from wcp360.identity.revocation import end_credentials
from wcp360.store.database import Database
from wcp360.store.models import ApiToken, ExternalIdentity, Session, User
from wcp360.store.scope import NOBODY
from wcp360.store.types import utcnow

_log = structlog.get_logger("wcp360.directory")


class DirectorySweep:
    def __init__(self, db: Database, directory: Directory) -> None:
        self.db = db
        self.directory = directory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Check every linked account holding live credentials; returns how many lost them."""
        now = utcnow()
        live_session = select(Session.user_id).where(Session.revoked_at.is_(None), Session.expires_at > now)
        live_token = select(ApiToken.user_id).where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
        with self.db.transaction(NOBODY, readonly=True) as s:
            links = s.execute(
                select(ExternalIdentity.id, ExternalIdentity.user_id, ExternalIdentity.subject,
                       ExternalIdentity.external_name, User.username)
                .join(User, User.id == ExternalIdentity.user_id)
                .where(
                    ExternalIdentity.issuer == self.directory.issuer,
                    or_(ExternalIdentity.user_id.in_(live_session), ExternalIdentity.user_id.in_(live_token)),
                )
            ).all()  # fmt: skip
        ended = 0
        for link in links:
            try:
                present = self.directory.still_present(link.external_name or link.username, link.subject)
            except ProviderUnavailable as unavailable:
                _log.warning("directory_recheck_skipped", detail=unavailable.detail)
                return ended
            self._checked(link.id)
            if not present:
                self._end(link.user_id, link.username)
                ended += 1
        return ended

    def _checked(self, link_id: uuid.UUID) -> None:
        with self.db.transaction(NOBODY) as s:
            link = s.get(ExternalIdentity, link_id)
            if link is not None:
                link.last_checked_at = utcnow()

    def _end(self, user_id: uuid.UUID, username: str) -> None:
        with self.db.transaction(NOBODY) as s:
            revoked = end_credentials(s, user_id, "directory_account_gone")
            audit.record(
                "directory_account_gone",
                actor_id=f"provider:{self.directory.name}",
                resource_type="user",
                resource_id=str(user_id),
                outcome="revoked",
                details={"username": username, "provider": self.directory.name, **revoked},
            )

    # -- the server's background round -------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_forever, name="directory-sweep", daemon=True)
        self._thread.start()

    def _run_forever(self) -> None:
        interval = self.directory.settings.recheck_interval.total_seconds()
        while not self._stop.wait(interval):
            try:
                self.run_once()
            except Exception:  # a round that fails must not end the sweep
                _log.exception("directory_recheck_failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
