"""An optional bearer token for ``rmlib serve`` (``--api-key-file FILE``): every route but ``/health``.

Why a token at all: a reward server on a shared cluster is reachable by every job on the network, and
anyone who can POST to it can spend its GPU. Clients send ``Authorization: Bearer <key>`` (OpenAI
clients do with ``api_key=...``; TRL and verl reward functions add the header, see docs/serving.md).

* The key is read once, when the server starts (:func:`read_api_key`): a missing or empty file, or a
  key with whitespace inside (a header token cannot hold it), is a :class:`~rmlib.config.ConfigError`
  naming the file, before the model loads.
* :class:`BearerAuth` is one FastAPI dependency on the whole app, so a route added later is guarded
  too; only ``/health`` stays open (load balancers and readiness probes carry no secret). The token
  is compared with :func:`hmac.compare_digest`, in time that does not depend on where it differs.
* A refused request gets 401 with ``WWW-Authenticate: Bearer`` (RFC 6750) and is counted by reason
  (``missing``: no bearer token; ``wrong``: another token) in ``/health`` as ``unauthorized``.
"""

# no `from __future__ import annotations`: FastAPI reads the dependency's `Request` annotation at run time
import hmac
from collections.abc import Callable
from pathlib import Path

from rmlib.config import ConfigError
from rmlib.serve.protocol import RequestError

#: routes answered without a token
OPEN_PATHS = frozenset({"/health"})


def read_api_key(path: str | Path) -> str:
    """The key in ``path`` (surrounding whitespace and the final newline removed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--api-key-file {p}: cannot read the key ({getattr(e, 'strerror', None) or e})") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"--api-key-file {p}: the file is empty; write the key on one line")
    if any(c.isspace() for c in key):
        raise ConfigError(f"--api-key-file {p}: the key has whitespace inside it (several lines?); a bearer token "
                          "is one word")
    return key


class BearerAuth:
    """``BearerAuth(key).dependency()``: refuses a request to any route but :data:`OPEN_PATHS` without the key.

    ``error(status, message)`` builds the refusal (the reward server's ``{"error": ...}`` or the chat
    server's OpenAI-shaped error); it is raised with ``headers`` set for the exception handler.
    """

    def __init__(self, key: str, error: Callable[[int, str], RequestError] = RequestError):
        if not key:
            raise ValueError("BearerAuth needs a non-empty key")
        self._key = key.encode()
        self._error = error
        self.rejected = {"missing": 0, "wrong": 0}  # 401s by reason, for /health

    def _refuse(self, reason: str, message: str) -> RequestError:
        self.rejected[reason] += 1
        err = self._error(401, message)
        err.headers = {"WWW-Authenticate": "Bearer"}
        return err

    def check(self, headers, path: str) -> None:
        """Raise the 401 for a request to ``path`` with these headers unless it may pass."""
        if path in OPEN_PATHS:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse("missing", "missing bearer token: send the header `Authorization: Bearer <key>` "
                                          "(the key in the server's --api-key-file)")
        if not hmac.compare_digest(token.encode(), self._key):
            raise self._refuse("wrong", "wrong bearer token")

    def dependency(self) -> Callable:
        """The FastAPI dependency (``FastAPI(dependencies=[Depends(auth.dependency())])``); FastAPI is
        imported here, as the server's other optional imports are, not when this module is."""
        from fastapi import Request

        async def bearer_token(request: Request) -> None:
            self.check(request.headers, request.url.path)

        return bearer_token
