"""Bearer tokens of an OpenID Connect provider (online.auth.oidc): a JWT signed with one of the
provider's keys, for this service's audience, from its issuer, not expired, becomes a Client
with the scopes its scope claim grants. PyJWT checks the token; its key client fetches the
provider's JWKS and caches it, asking again for a key id it has not seen (a rotation)."""

import jwt

from coverage_serving.config import OidcConfig
from coverage_serving.errors import ServingError
from coverage_serving.online.auth import Client, NotAuthenticatedError, Scope

# Signatures with the provider's public keys only: a symmetric algorithm would let anyone who
# knows a public key sign with it.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_SECONDS = 30  # clock skew between the provider and this machine


class ProviderUnavailableError(ServingError):
    """The provider's signing keys could not be fetched: the token can be neither accepted nor
    refused."""


class TokenVerifier:
    def __init__(self, config: OidcConfig) -> None:
        self._config = config
        self._keys = jwt.PyJWKClient(config.jwks_url, cache_keys=True, timeout=10)

    def client_of(self, token: str) -> Client:
        """The caller the token names, with the scopes it grants; NotAuthenticatedError saying
        what is wrong with it (never the token itself)."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", self._config.client_claim]},
            )
        except jwt.PyJWKClientConnectionError as err:
            raise ProviderUnavailableError(
                f"the OIDC provider's signing keys could not be fetched from "
                f"{self._config.jwks_url}: {err}"
            ) from None
        except jwt.PyJWTError as err:
            raise NotAuthenticatedError(f"the bearer token is not valid: {err}") from None
        return Client(f"oidc:{claims[self._config.client_claim]}", self._scopes(claims))

    def _scopes(self, claims: dict[str, object]) -> frozenset[Scope]:
        """This endpoint's scopes among those the token grants; a provider's others are not
        this endpoint's business."""
        granted = claims.get(self._config.scopes_claim)
        names = granted.split() if isinstance(granted, str) else granted
        known = {scope.value for scope in Scope}
        return frozenset(Scope(n) for n in names or [] if isinstance(n, str) and n in known)
