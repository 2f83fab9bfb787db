"""Whether the server may listen where it is asked to: without authentication, only on a
loopback address, unless the operator says --insecure."""

import ipaddress
import logging

from coverage_serving.config import ConfigError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def require_safe_exposure(host: str, authenticated: bool, insecure: bool) -> None:
    if authenticated or is_loopback(host):
        return
    if not insecure:
        raise ConfigError(
            f"refusing to serve on {host} without authentication: anyone who reaches it could "
            "score and pin any model and refresh it. Configure online.auth (README: Exposing "
            "on-demand scoring), bind 127.0.0.1, or pass --insecure to serve it open anyway"
        )
    log.warning(
        "serving on %s WITHOUT authentication (--insecure): any caller may score, pin and "
        "refresh every model",
        host,
    )
