"""Certificates from an ACME CA (Let's Encrypt; Pebble in the tests) with certbot's `acme` library.

One account per agent (an ECDSA P-256 key in the agent's state, 0600), one ECDSA P-256 key per
certificate, the HTTP-01 challenge answered by nginx from its configuration: `publish` puts the
answers into a new generation (tested and swapped like any change) before the CA is told to look.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from wcp360.config.websites import AcmeConfig

USER_AGENT = "wcp360-agent"
CESSATION_OF_OPERATION = 5  # RFC 5280 reason code: the site is gone


class IssueFailed(Exception):
    pass


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes
    key_pem: bytes
    not_after: dt.datetime


def new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def not_after(chain_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(chain_pem).not_valid_after_utc


def has_ocsp_responder(chain_pem: bytes) -> bool:
    """Stapling only makes sense (and nginx only staples) where the certificate names a responder."""
    certificate = x509.load_pem_x509_certificate(chain_pem)
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in access)


class AcmeIssuer:
    def __init__(self, settings: AcmeConfig, state_dir: Path, publish: Callable[[dict[str, str]], None]) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.publish = publish
        self._client: client.ClientV2 | None = None

    def issue(self, domains: list[str]) -> Issued:
        """A certificate for `domains` (all of them in one order), or IssueFailed saying why."""
        try:
            return self._issue(domains)
        except (errors.Error, messages.Error, OSError, ValueError) as exc:
            self._client = None  # a fresh directory and nonce next time
            raise IssueFailed(_reason(exc)) from None
        except Exception as exc:  # requests' own errors (connection refused, TLS) and the like
            self._client = None
            raise IssueFailed(f"{type(exc).__name__}: {_reason(exc)}") from None

    def _issue(self, domains: list[str]) -> Issued:
        acme = self._account()
        key_pem = new_key_pem()
        order = acme.new_order(crypto_util.make_csr(key_pem, domains))
        answers: dict[str, str] = {}
        chosen: list[tuple[messages.ChallengeBody, challenges.HTTP01Response]] = []
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # the CA remembers a recent validation of this name
            challenge = next((c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if challenge is None:
                raise IssueFailed(f"the CA offers no HTTP-01 challenge for {authorization.body.identifier.value}")
            response, validation = challenge.response_and_validation(acme.net.key)
            answers[challenge.chall.encode("token")] = validation
            chosen.append((challenge, response))
        if answers:
            self.publish(answers)
        try:
            for challenge, response in chosen:
                acme.answer_challenge(challenge, response)
            deadline = dt.datetime.now() + self.settings.timeout
            finished = acme.poll_and_finalize(order, deadline)
        finally:
            if answers:
                self.publish({})
        chain = finished.fullchain_pem.encode()
        return Issued(chain_pem=chain, key_pem=key_pem, not_after=not_after(chain))

    def revoke(self, chain_pem: bytes) -> None:
        try:
            certificate = x509.load_pem_x509_certificate(chain_pem)
            self._account().revoke(certificate, CESSATION_OF_OPERATION)
        except Exception as exc:
            self._client = None
            raise IssueFailed(_reason(exc)) from None

    def _account(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        key = JWKEC(key=serialization.load_pem_private_key(self._account_key(), password=None))
        verify: bool | str = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        # `verify_ssl` goes to requests' `verify`, which also takes a CA bundle's path.
        net = client.ClientNetwork(key, alg=ES256, verify_ssl=verify, user_agent=USER_AGENT)  # type: ignore[arg-type]
        directory = client.ClientV2.get_directory(self.settings.directory_url, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(email=self.settings.email, terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as existing:  # this key has an account: use it
            net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        self._client = acme
        return acme

    def _account_key(self) -> bytes:
        path = self.state_dir / "account.pem"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = new_key_pem()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return pem


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]
