"""Loopback stand-ins for the Kubernetes API calls rotator's tests need answered.

OpenBao's ``kubernetes`` auth method sends the pod's service-account JWT to
``POST /apis/authentication.k8s.io/v1/tokenreviews``; ``TokenReviewServer`` answers it
for the tokens it issued, so rotator's Kubernetes login runs for real.
``AppsApiServer`` takes the workload PATCH of the ``kubernetes_restart`` hook.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class _JsonHandler(LoopbackHandler):
    """Answers with JSON bodies, quietly."""

    def answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))


class _LoopbackServer:
    """An HTTP server on a free loopback port, serving on a daemon thread until stopped."""

    def __init__(self) -> None:
        self._httpd = LoopbackServer(self._handler()).start()

    @property
    def address(self) -> str:
        return self._httpd.url

    def stop(self) -> None:
        self._httpd.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class TokenReviewServer(_LoopbackServer):
    def __init__(self) -> None:
        self.accounts: dict[str, tuple[str, str, str]] = {}
        super().__init__()

    def issue_token(self, namespace: str, name: str) -> str:
        """A service-account JWT in the legacy secret-token format (unsigned)."""
        uid = str(uuid.uuid4())
        claims = {
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        token = f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"
        self.accounts[token] = (namespace, name, uid)
        return token

    @staticmethod
    def ca_certificate(directory: Path) -> str:
        """A throwaway CA certificate: Vault insists on one, though this server speaks HTTP."""
        key, cert = directory / "ca.key", directory / "ca.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "1",
                "-subj",
                "/CN=rotator-test-ca",
            ],
            check=True,
            capture_output=True,
        )
        return cert.read_text()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_JsonHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                token = body.get("spec", {}).get("token", "")
                account = server.accounts.get(token)
                status: dict[str, Any] = {"authenticated": False}
                if account:
                    namespace, name, uid = account
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{namespace}:{name}",
                            "uid": uid,
                            "groups": ["system:serviceaccounts"],
                        },
                    }
                self.answer(
                    201,
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    },
                )

        return Handler


class AppsApiServer(_LoopbackServer):
    """A loopback stand-in for apps/v1 workload PATCH, as ``kubectl rollout restart`` sends it.

    Holds workloads by (namespace, resource, name); applies a strategic-merge patch of
    the pod template's annotations; answers 401 to a wrong bearer token, 404 to an
    unknown workload, 415 to another content type, and ``fail_next`` times 503.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.workloads: dict[tuple[str, str, str], dict[str, str]] = {}
        self.patches: list[dict[str, Any]] = []
        self.fail_next = 0
        super().__init__()

    def add(self, namespace: str, resource: str, name: str) -> None:
        self.workloads[(namespace, resource, name)] = {}

    def annotations(self, namespace: str, resource: str, name: str) -> dict[str, str]:
        return self.workloads[(namespace, resource, name)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_JsonHandler):
            def do_PATCH(self) -> None:
                body = self.read_json()
                server.patches.append({"path": self.path, "body": body})
                parts = self.path.strip("/").split("/")
                if self.headers.get("authorization") != f"Bearer {server.token}":
                    self.answer(401, {"kind": "Status", "reason": "Unauthorized"})
                    return
                if self.headers.get("content-type") != "application/strategic-merge-patch+json":
                    self.answer(415, {"kind": "Status", "reason": "UnsupportedMediaType"})
                    return
                if server.fail_next:
                    server.fail_next -= 1
                    self.answer(503, {"kind": "Status", "reason": "ServiceUnavailable"})
                    return
                # /apis/apps/v1/namespaces/{ns}/{resource}/{name}
                key = (parts[4], parts[5], parts[6]) if len(parts) == 7 else None
                if parts[:4] != ["apis", "apps", "v1", "namespaces"] or key not in server.workloads:
                    self.answer(404, {"kind": "Status", "reason": "NotFound"})
                    return
                template = body["spec"]["template"]["metadata"]["annotations"]
                server.workloads[key].update(template)
                self.answer(200, {"kind": "Deployment", "metadata": {"name": key[2]}})

        return Handler
