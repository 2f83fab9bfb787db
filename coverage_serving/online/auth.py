"""Who may call the on-demand endpoint: API keys, one or more per client, kept only as hashes,
each client with scopes. The keys document lives where online.auth points (an environment
variable or a file), never in the repository:

    clients:
      planning-dashboard:
        scopes: [predict]
        rate_limit: 20/second          # optional; online.rate_limit otherwise
        keys: [sha256:9f86d0...]       # two entries while a key is rotated

A key is 32 random bytes (`coverage-serving api-key` makes one), so a plain SHA-256 is enough
to keep it unrecoverable from the document; a slow password hash would cost milliseconds on
every request for no gain."""

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Protocol

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from coverage_serving.config import AuthConfig, ConfigError
from coverage_serving.config.schema import RateLimit
from coverage_serving.errors import ServingError

HASH_PREFIX = "sha256:"


class Scope(StrEnum):
    PREDICT = "predict"  # score with the version the model serves
    PIN = "pin"  # score with a version named in the request
    ADMIN = "admin"  # follow the alias now (refresh)


class NotAuthenticatedError(ServingError):
    """No API key, or one that belongs to no client."""


class NotPermittedError(ServingError):
    """The client's key is valid but lacks the scope the request needs."""


@dataclass(frozen=True)
class Client:
    id: str
    scopes: frozenset[Scope]
    rate_limit: str | None = None  # None: online.rate_limit

    def require(self, scope: Scope, doing: str) -> None:
        if scope not in self.scopes:
            raise NotPermittedError(
                f"client {self.id!r} may not {doing}: that needs scope {scope.value!r}; "
                f"its scopes are {sorted(self.scopes)}"
            )


# Without online.auth every caller is this client: allowed only on a loopback address, or
# with --insecure.
ANONYMOUS = Client("anonymous", frozenset(Scope))


def _key_hash(value: str) -> str:
    digest = value.removeprefix(HASH_PREFIX)
    if not value.startswith(HASH_PREFIX) or len(digest) != 64 or not _is_hex(digest):
        # The value itself is not repeated: it could be a key pasted by mistake.
        raise ValueError(f"is not {HASH_PREFIX}<64 hex digits> (coverage-serving api-key)")
    return value.lower()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


class _ClientEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1)
    rate_limit: RateLimit | None = None
    keys: list[Annotated[str, AfterValidator(_key_hash)]] = Field(min_length=1)


class _KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clients: dict[str, _ClientEntry] = Field(min_length=1)


def hash_key(key: str) -> str:
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


class Tokens(Protocol):
    """Bearer tokens of another issuer (online.oidc)."""

    def client_of(self, token: str) -> "Client": ...


class Keyring:
    """The clients of the keys document, found by the hash of a key; and, with `tokens`, the
    callers a provider's bearer tokens name."""

    def __init__(
        self, client_of_hash: Mapping[str, Client] | None = None, tokens: Tokens | None = None
    ) -> None:
        self._client_of_hash = dict(client_of_hash or {})
        self._tokens = tokens

    def with_tokens(self, tokens: Tokens) -> "Keyring":
        return Keyring(self._client_of_hash, tokens)

    @classmethod
    def parse(cls, text: str, where: str) -> "Keyring":
        try:
            document = _KeysDocument.model_validate(yaml.safe_load(text))
        except (yaml.YAMLError, ValidationError) as err:
            raise ConfigError(f"API keys in {where}: {_problems(err)}") from None
        clients = {
            name: Client(name, frozenset(entry.scopes), entry.rate_limit)
            for name, entry in document.clients.items()
        }
        hashes: dict[str, str] = {}
        for name, entry in document.clients.items():
            for digest in entry.keys:
                if hashes.setdefault(digest, name) != name:
                    raise ConfigError(
                        f"API keys in {where}: one key hash is listed for both "
                        f"{hashes[digest]!r} and {name!r}"
                    )
        return cls({digest: clients[name] for digest, name in hashes.items()})

    def client_of(self, credential: str | None) -> Client:
        if not credential:
            raise NotAuthenticatedError(
                "no API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                + (", or send the OIDC provider's token as the bearer" if self._tokens else "")
            )
        if self._tokens is not None and self.is_token(credential):
            return self._tokens.client_of(credential)
        client = self._client_of_hash.get(hash_key(credential))
        if client is None:
            raise NotAuthenticatedError("the API key is not valid (unknown, or revoked)")
        return client

    def is_token(self, credential: str | None) -> bool:
        """Whether the credential goes to the token issuer: a JWT's three dot-separated parts
        (an API key, URL-safe base64, has no dot). Checking it may fetch the issuer's keys."""
        return self._tokens is not None and credential is not None and credential.count(".") == 2


def keys_of(auth: AuthConfig, environ: Mapping[str, str] = os.environ) -> Keyring:
    """The API keys online.auth points at (none when it names no keys document)."""
    if auth.keys_file is not None:
        path = auth.keys_file.expanduser()
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(
                f"online.auth.keys_file: {path} cannot be read: {err.strerror}"
            ) from None
        return Keyring.parse(text, str(path))
    if auth.keys_env is None:
        return Keyring()
    text = environ.get(auth.keys_env)
    if not text:
        raise ConfigError(f"online.auth.keys_env: environment variable {auth.keys_env} is not set")
    return Keyring.parse(text, f"${auth.keys_env}")


def _problems(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in err.errors(include_input=False)
        )
    return f"not YAML ({type(err).__name__})"
