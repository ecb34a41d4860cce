"""Who an audit event is recorded for: the person or workload, then host and process.

``$ROTATOR_ACTOR`` when set (a CI job, a change ticket, a person's name), else
in Kubernetes the pod and its service account (``$POD_NAME`` /
``$POD_SERVICE_ACCOUNT`` from the downward API, else the host name and the
``sub`` claim of the mounted service account token, read without checking it:
it only names the account), else the login name (``$USER``). ``host:pid``
always follows, so two runs of one person stay apart.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: The audit table's actor column holds at most this many characters.
MAX_ACTOR = 200
_MAX_TOKEN = 16384


def current_actor() -> str:
    host = f"{socket.gethostname()}:{os.getpid()}"
    who = os.environ.get("ROTATOR_ACTOR", "").strip() or _kubernetes() or _login()
    return (f"{who} on {host}" if who else host)[:MAX_ACTOR]


def _kubernetes() -> str | None:
    if "KUBERNETES_SERVICE_HOST" not in os.environ:
        return None
    pod = os.environ.get("POD_NAME") or socket.gethostname()
    account = os.environ.get("POD_SERVICE_ACCOUNT") or _token_subject()
    return f"pod {pod}" + (f" as {account}" if account else "")


def _token_subject() -> str | None:
    """``system:serviceaccount:NAMESPACE:NAME`` from the token, as ``NAMESPACE/NAME``."""
    try:
        with SERVICE_ACCOUNT_TOKEN.open("rb") as file:
            token = file.read(_MAX_TOKEN).decode("ascii").strip()
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError, UnicodeDecodeError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str) or not subject.startswith("system:serviceaccount:"):
        return None
    return "/".join(subject.removeprefix("system:serviceaccount:").split(":", 1))


def _login() -> str | None:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or None
