"""Who may open the web UI: Gradio's login (`auth`) and the rule that a page reachable from other machines
needs one.

The page can start trainings, write files and load models, so it is served open only on loopback. A public
`--share` link or another `--host` without a login is refused unless the operator forces it
(`--insecure-no-auth`). Logins come from `--auth-file FILE` (one `user:password` a line, the safe way),
`--auth user:password` (visible to other users in the process list), or TUNEFORGE_WEBUI_AUTH=user:password.
Gradio checks them on the page and on every API call alike.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
AUTH_ENV = "TUNEFORGE_WEBUI_AUTH"
Login = tuple[str, str]


@dataclass(frozen=True)
class Exposure:
    host: str
    share: bool
    logins: tuple[Login, ...]


def read_logins(auth: str | None, auth_file: str | None, environ: Mapping[str, str]) -> tuple[Login, ...]:
    """The logins from `--auth`, `--auth-file` and TUNEFORGE_WEBUI_AUTH together (none: an open page)."""
    logins: list[Login] = []
    if auth:
        logins.append(_login(auth, "--auth"))
    if environ.get(AUTH_ENV):
        logins.append(_login(environ[AUTH_ENV], AUTH_ENV))
    if auth_file:
        logins.extend(_logins_in_file(auth_file))
    return tuple(logins)


def _login(text: str, where: str) -> Login:
    user, colon, password = text.strip().partition(":")
    if not colon or not user or not password:
        raise UserError(f"{where}: expected user:password (both non-empty), got {_masked(text)}")
    return user, password


def _logins_in_file(path: str) -> list[Login]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise UserError(f"--auth-file {path}: {error.strerror or error}") from None
    logins = [_login(line, f"--auth-file {path} line {number}") for number, line in enumerate(lines, 1)
              if line.strip() and not line.lstrip().startswith("#")]
    if not logins:
        raise UserError(f"--auth-file {path}: no user:password line in it")
    return logins


def _masked(text: str) -> str:
    user, colon, _ = text.strip().partition(":")
    return repr(f"{user}:***" if colon else user)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(exposure: Exposure, insecure_no_auth: bool) -> None:
    """UserError when the page would be reachable from other machines without a login and nobody forced it."""
    if exposure.logins or (is_loopback(exposure.host) and not exposure.share):
        return
    reach = "a public --share link" if exposure.share else f"--host {exposure.host}"
    if insecure_no_auth:
        logger.warning("The web UI is served without a login on %s (--insecure-no-auth): anyone who reaches it "
                       "can train, write files under the allowed folders and load models on this machine.", reach)
        return
    raise UserError(f"refusing to serve the web UI on {reach} without a login: anyone who reaches it could start "
                    "trainings and write files on this machine. Add --auth-file FILE (one user:password a line) "
                    f"or set {AUTH_ENV}=user:password, or pass --insecure-no-auth to serve it open anyway.")


def exposure_from(host: str | None, share: bool, auth: str | None, auth_file: str | None,
                  environ: Mapping[str, str] | None = None) -> Exposure:
    """Where the page is served and with which logins (GRADIO_SERVER_NAME when --host is not given)."""
    environ = os.environ if environ is None else environ
    return Exposure(host or environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST, share,
                    read_logins(auth, auth_file, environ))
