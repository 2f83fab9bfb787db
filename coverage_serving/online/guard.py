"""The first steps of every scoring or admin request: authenticate the caller, check the scope
the route needs, spend one request of the caller's rate limit. As FastAPI dependencies, so the
OpenAPI document states the credentials each route takes."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from coverage_serving.online.audit import record
from coverage_serving.online.auth import ANONYMOUS, Client, Keyring, Scope
from coverage_serving.online.ratelimit import RateLimiter

# auto_error=False: a missing credential is this module's 401, with its JSON body.
BEARER = HTTPBearer(
    auto_error=False, description="An API key, or a token of online.auth.oidc's provider"
)
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")

Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
ApiKey = Annotated[str | None, Security(API_KEY)]

Guard = Callable[..., Awaitable[Client]]


def guard(keyring: Keyring | None, limiter: RateLimiter, scope: Scope, doing: str) -> Guard:
    """The dependency of a route that needs `scope`: the calling Client, or a 401/403/429."""

    def admit(request: Request, client: Client) -> Client:
        record(request, client=client.id)
        client.require(scope, doing)
        limiter.spend(client)
        return client

    if keyring is None:
        # No credentials to declare: the document must not promise a 401 the server never gives.
        async def anonymous(request: Request) -> Client:
            return admit(request, ANONYMOUS)

        return anonymous

    async def authenticated(request: Request, bearer: Bearer, api_key: ApiKey) -> Client:
        credential = bearer.credentials if bearer else api_key
        if keyring.is_token(credential):  # its check may fetch the issuer's keys: off the loop
            return admit(request, await run_in_threadpool(keyring.client_of, credential))
        return admit(request, keyring.client_of(credential))

    return authenticated
