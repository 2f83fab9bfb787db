"""The callers online.auth admits: the clients of its API keys document and, with `oidc`, the
callers its provider's bearer tokens name."""

import os
from collections.abc import Mapping

from coverage_serving.config import AuthConfig
from coverage_serving.online.auth import Keyring, keys_of
from coverage_serving.online.oidc import TokenVerifier


def keyring_of(auth: AuthConfig | None, environ: Mapping[str, str] = os.environ) -> Keyring | None:
    """None when authentication is not configured."""
    if auth is None:
        return None
    keys = keys_of(auth, environ)
    return keys if auth.oidc is None else keys.with_tokens(TokenVerifier(auth.oidc))
