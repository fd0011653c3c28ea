"""One OpenID Connect provider as WCP360 talks to it: discovery, keys, the code exchange, the ID token.

The protocol is Authlib's (its requests-based `OAuth2Session` builds the authorization request with
PKCE S256 and exchanges the code with the client's credentials) and joserfc's (Authlib's JOSE
library: signature and claims of the ID token). What is ours is the policy around them:

- discovery from `<issuer>/.well-known/openid-configuration`, whose `issuer` must be exactly the
  configured one (OIDC Discovery 4.3: a document naming another issuer is a mix-up or a forgery);
- signing keys from `jwks_uri`, cached for `KEYS_TTL` and fetched again at once for a `kid` the cache
  does not know (the provider rotated), at most every `KEYS_REFETCH_GAP` so a stream of unknown kids
  cannot turn WCP360 into a load generator against the provider;
- the ID token: signed with an algorithm from the config's list (default: the provider's, minus
  `none` and HMAC), `iss` exactly the issuer, `aud` holding the client id (and `azp` the client
  when there are several audiences), unexpired, issued recently, and the `nonce` of this flow.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key, KeySet

from wcp360.config.security import KNOWN_ISSUERS, OidcClient
from wcp360.errors import ProviderUnavailable, Unauthorized
from wcp360.identity.external import ExternalProfile

METADATA_TTL = 3600.0
KEYS_TTL = 3600.0
KEYS_REFETCH_GAP = 10.0
# Clock difference tolerated on exp/iat/nbf, and how old an ID token may be when it arrives.
LEEWAY_SECONDS = 60
MAX_TOKEN_AGE = 600
# Asymmetric signatures only: an HMAC "signed" with the client secret proves nothing about who made it.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)


class RefusedToken(Unauthorized):
    code = "id-token-refused"
    title = "The identity provider's answer was refused"


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    # RFC 9207: the provider puts `iss` in its authorization response (a mix-up defense).
    sends_iss: bool


class OidcProvider:
    def __init__(self, name: str, settings: OidcClient) -> None:
        self.name = name
        self.settings = settings
        issuer = settings.issuer_url or KNOWN_ISSUERS.get(name)
        if issuer is None:
            raise ValueError(f"provider {name}: issuer_url is required")
        self.issuer = issuer.rstrip("/")
        self._lock = threading.Lock()
        self._metadata: tuple[float, Metadata] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._last_refetch = -KEYS_REFETCH_GAP

    # -- the two requests of the code flow -------------------------------------------------

    def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        metadata = self.metadata()
        extra: dict[str, Any] = {}
        if self.settings.trust_mfa:
            # Ask for `amr` explicitly (OIDC Core 5.5): many providers send it only when asked.
            extra["claims"] = json.dumps({"id_token": {"amr": None}})
        url, _ = self._session().create_authorization_url(
            metadata.authorization_endpoint, state=state, nonce=nonce, code_verifier=code_verifier, **extra
        )
        return str(url)

    def exchange(self, code: str, code_verifier: str) -> str:
        """The authorization code for tokens at the token endpoint; returns the ID token."""
        metadata = self.metadata()
        try:
            token = self._session().fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                **self._http(),
            )
        except AuthlibBaseError as error:
            raise RefusedToken(f"{self.name} refused the code: {error.error}") from None
        except requests.RequestException as error:
            raise self._unavailable(error) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise RefusedToken(f"{self.name} sent no ID token")
        return id_token

    # -- the ID token ------------------------------------------------------------------------

    def validate(self, id_token: str, nonce: str) -> dict[str, Any]:
        metadata = self.metadata()
        allowed = [a for a in (self.settings.algorithms or metadata.algorithms) if a in ASYMMETRIC]
        try:
            token = jwt.decode(id_token, self._key_for, algorithms=allowed)
            claims = dict(token.claims)
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except (JoseError, ValueError) as error:
            raise RefusedToken(f"the ID token from {self.name} was refused: {_reason(error)}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise RefusedToken(f"the ID token from {self.name} was issued to another party (azp)")
        if int(claims["iat"]) < time.time() - MAX_TOKEN_AGE - LEEWAY_SECONDS:
            raise RefusedToken(f"the ID token from {self.name} is too old")
        return claims

    def profile(self, claims: dict[str, Any]) -> ExternalProfile:
        settings = self.settings
        email = claims.get("email") if claims.get("email_verified", True) is not False else None
        username = claims.get(settings.username_claim)
        if not isinstance(username, str) and isinstance(email, str):
            username = email.partition("@")[0]
        groups = claims.get(settings.groups_claim) or []
        amr = claims.get("amr") or []
        return ExternalProfile(
            provider=self.name,
            issuer=self.issuer,
            subject=str(claims["sub"]),
            username=username if isinstance(username, str) else None,
            email=email if isinstance(email, str) else None,
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
            mfa=settings.trust_mfa and isinstance(amr, list) and any(m in settings.mfa_methods for m in amr),
        )

    # -- discovery and keys ------------------------------------------------------------------

    def metadata(self) -> Metadata:
        with self._lock:
            if self._metadata and self._metadata[0] > time.monotonic():
                return self._metadata[1]
        document = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if document.get("issuer") != self.issuer:
            raise ProviderUnavailable(f"{self.name}: the discovery document names another issuer")
        try:
            metadata = Metadata(
                issuer=self.issuer,
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                algorithms=tuple(document.get("id_token_signing_alg_values_supported") or ["RS256"]),
                sends_iss=bool(document.get("authorization_response_iss_parameter_supported")),
            )
        except KeyError as missing:
            raise ProviderUnavailable(f"{self.name}: the discovery document lacks {missing}") from None
        with self._lock:
            self._metadata = (time.monotonic() + METADATA_TTL, metadata)
        return metadata

    def _key_for(self, guest: GuestProtocol) -> Key:
        kid = guest.headers().get("kid")
        keys = self._key_set(refresh=False)
        found = _find(keys, kid)
        if found is None:
            found = _find(self._key_set(refresh=True), kid)
        if found is None:
            raise RefusedToken(f"the ID token from {self.name} was signed with a key it does not publish")
        return found

    def _key_set(self, refresh: bool) -> KeySet:
        """The cached key set; with `refresh` (an unknown kid) fetched again, unless the last
        such refetch was under KEYS_REFETCH_GAP ago."""
        now = time.monotonic()
        with self._lock:
            cached = self._keys
            if cached is not None:
                if not refresh and cached[0] > now:
                    return cached[1]
                if refresh and now - self._last_refetch < KEYS_REFETCH_GAP:
                    return cached[1]
            if refresh:
                self._last_refetch = now
        document = self._get_json(self.metadata().jwks_uri)
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError):
            raise ProviderUnavailable(f"{self.name}: its key set could not be read") from None
        with self._lock:
            self._keys = (time.monotonic() + KEYS_TTL, keys)
        return keys

    def check(self) -> str:
        """Doctor: discovery and keys answer over verified TLS."""
        metadata = self.metadata()
        keys = self._key_set(refresh=True)
        return f"discovery and {len(keys.keys)} signing key(s) at {metadata.issuer}"

    # -- HTTP ------------------------------------------------------------------------------

    def _session(self) -> OAuth2Session:
        return OAuth2Session(
            client_id=self.settings.client_id,
            client_secret=self._client_secret(),
            scope=" ".join(self.settings.scopes),
            redirect_uri=self.settings.redirect_url,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        )

    def _http(self) -> dict[str, Any]:
        # `verify` per request: requests lets REQUESTS_CA_BUNDLE override a session-wide one.
        return {
            "verify": str(self.settings.ca_file) if self.settings.ca_file else True,
            "timeout": self.settings.timeout.total_seconds(),
        }

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            answer = requests.get(url, allow_redirects=False, **self._http())  # noqa: S113 - timeout in _http
            answer.raise_for_status()
            document = answer.json()
        except (requests.RequestException, ValueError) as error:
            raise self._unavailable(error) from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.name}: {url} did not answer with a JSON object")
        return document

    def _unavailable(self, error: Exception) -> ProviderUnavailable:
        return ProviderUnavailable(f"the identity provider {self.name} did not answer: {type(error).__name__}")

    def _client_secret(self) -> str:
        if self.settings.client_secret_file is not None:
            return self.settings.client_secret_file.read_text().strip()
        assert self.settings.client_secret is not None
        return self.settings.client_secret.get_secret_value()


def _find(keys: KeySet, kid: object) -> Key | None:
    for key in keys.keys:
        if kid is None or key.kid == kid:
            return key
    return None


def _reason(error: Exception) -> str:
    # joserfc's messages name the claim and the rule, never a secret.
    return str(getattr(error, "description", None) or error) or type(error).__name__
