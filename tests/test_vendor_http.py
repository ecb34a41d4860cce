"""``VendorHttp``: which answers are retried and what each status becomes, in process.

The calls are answered by httpx's ``MockTransport`` (the HTTP library's own seam, not
rotator's code path) and stamina runs in its testing mode, so retries do not wait; what
each vendor's emulator answers over real sockets is the provider contract's business.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import stamina

from rotator.errors import (
    VendorAuthError,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorRateLimited,
    VendorUnavailable,
)
from rotator.providers.http import VendorHttp, json_error_reader
from rotator.providers.request import VendorRequest
from rotator.secret import REDACTED, Secret
from tests.support.recorder import Recorder

Answer = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def retries_without_waiting() -> Iterator[None]:
    # cap: the attempts VendorHttp asks for (5) are kept; only the backoff waits go.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class Vendor:
    """Answers calls in turn from ``answers`` (the last one repeats) and records them."""

    def __init__(self, *answers: Answer | httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer if isinstance(answer, httpx.Response) else answer(request)

    def client(
        self,
        *,
        token: Callable[[], str] = lambda: "vendor-token-0123456789",
        reauth: Callable[[], bool] | None = None,
        retry_timeout: float = 60.0,
    ) -> VendorHttp:
        return VendorHttp(
            vendor="acme",
            base_url="https://api.acme.test",
            auth=lambda credential: {
                "Authorization": f"Bearer {credential.reveal() if credential else token()}"
            },
            timeout=5.0,
            read_error=json_error_reader("message"),
            retry_timeout=retry_timeout,
            reauth=reauth,
            transport=httpx.MockTransport(self),
        )


def status(code: int, message: str = "no", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, json={"message": message}, headers=headers)


OK = httpx.Response(200, json={"keys": []})


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, VendorError),
        (401, VendorAuthError),
        (403, VendorAuthError),
        (404, VendorNotFound),
        (409, VendorConflict),
        (422, VendorError),
        (429, VendorRateLimited),
        (500, VendorUnavailable),
        (502, VendorUnavailable),
        (503, VendorUnavailable),
    ],
)
def test_each_error_status_becomes_its_vendor_error_naming_the_call_and_the_vendors_words(
    code: int, error: type[VendorError]
) -> None:
    vendor = Vendor(status(code, "the vendor's own words"))

    with pytest.raises(VendorError) as caught:
        vendor.client().send(VendorRequest.build("POST", "/keys", body={"name": "k"}))

    assert type(caught.value) is error
    assert caught.value.status == code
    assert f"acme POST /keys -> {code}: the vendor's own words" in str(caught.value)


def test_a_refused_token_says_to_check_the_token_and_its_scopes() -> None:
    with pytest.raises(VendorAuthError, match="check the provider's token and its scopes"):
        Vendor(status(403)).client().send(VendorRequest.build("GET", "/keys"))


def test_a_vendor_error_message_is_cut_short_and_holds_no_live_secret() -> None:
    secret = Secret("sk-live-secret-0123456789")
    vendor = Vendor(status(400, f"bad key {secret.reveal()} " + "x" * 1000))

    with pytest.raises(VendorError) as caught:
        vendor.client().send(VendorRequest.build("GET", "/keys"))

    message = str(caught.value)
    assert secret.reveal() not in message
    assert REDACTED in message
    assert len(message) < 400


def test_an_idempotent_call_answered_5xx_is_retried_until_it_succeeds() -> None:
    vendor = Vendor(status(503), status(502), OK)

    response = vendor.client().send(VendorRequest.build("GET", "/keys"))

    assert response.status_code == 200
    assert len(vendor.requests) == 3


def test_a_post_answered_5xx_is_not_repeated_so_no_second_key_is_minted() -> None:
    vendor = Vendor(status(503), OK)

    with pytest.raises(VendorUnavailable):
        vendor.client().send(VendorRequest.build("POST", "/keys", body={"name": "k"}))

    assert len(vendor.requests) == 1


def test_a_post_that_timed_out_is_not_repeated() -> None:
    vendor = Vendor(time_out, OK)

    with pytest.raises(VendorUnavailable, match="timed out; the vendor may be slow or down"):
        vendor.client().send(VendorRequest.build("POST", "/keys", body={"name": "k"}))

    assert len(vendor.requests) == 1


def test_a_post_whose_connection_was_refused_is_repeated_as_it_never_reached_the_vendor() -> None:
    vendor = Vendor(refuse_connection, OK)

    response = vendor.client().send(VendorRequest.build("POST", "/keys", body={"name": "k"}))

    assert response.status_code == 200
    assert len(vendor.requests) == 2


def test_a_post_declared_idempotent_is_repeated_after_a_5xx() -> None:
    vendor = Vendor(status(500), OK)

    vendor.client().send(VendorRequest.build("POST", "/keys/k/expire", idempotent=True))

    assert len(vendor.requests) == 2


def test_retries_stop_after_five_attempts_with_the_last_error() -> None:
    vendor = Vendor(time_out)

    with pytest.raises(VendorUnavailable, match="acme GET /keys: timed out"):
        vendor.client().send(VendorRequest.build("GET", "/keys"))

    assert len(vendor.requests) == 5


def test_an_unreachable_vendor_says_to_check_base_url_and_the_network() -> None:
    with pytest.raises(VendorUnavailable, match=r"cannot connect .*check base_url and the network"):
        Vendor(refuse_connection).client().send(VendorRequest.build("GET", "/keys"))


@pytest.mark.parametrize("code", [400, 404, 409, 422])
def test_a_client_error_is_never_retried(code: int) -> None:
    vendor = Vendor(status(code), OK)

    with pytest.raises(VendorError):
        vendor.client().send(VendorRequest.build("GET", "/keys"))

    assert len(vendor.requests) == 1


def test_a_429_with_a_retry_after_within_the_budget_is_retried_even_for_a_post() -> None:
    vendor = Vendor(status(429, headers={"Retry-After": "2"}), OK)

    response = vendor.client().send(VendorRequest.build("POST", "/keys", body={"name": "k"}))

    assert response.status_code == 200
    assert len(vendor.requests) == 2


def test_a_429_with_a_retry_after_beyond_the_budget_ends_the_call_with_the_vendors_wait() -> None:
    vendor = Vendor(status(429, headers={"Retry-After": "120"}), OK)

    with pytest.raises(VendorRateLimited) as caught:
        vendor.client(retry_timeout=60).send(VendorRequest.build("GET", "/keys"))

    assert len(vendor.requests) == 1
    assert caught.value.retry_after == 120
    assert "the vendor asks to wait 120s, longer than rotator waits" in str(caught.value)


def test_a_retry_after_given_as_an_http_date_is_read_as_the_wait_until_then() -> None:
    when = datetime.now(UTC) + timedelta(seconds=300)
    vendor = Vendor(status(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))

    with pytest.raises(VendorRateLimited) as caught:
        vendor.client(retry_timeout=60).send(VendorRequest.build("GET", "/keys"))

    assert caught.value.retry_after == pytest.approx(300, abs=5)


def test_a_429_naming_only_the_hourly_reset_carries_the_reset_time() -> None:
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=40)
    headers = {"ratelimit-reset": str(int(reset.timestamp()))}
    vendor = Vendor(status(429, headers=headers))

    with pytest.raises(VendorRateLimited) as caught:
        vendor.client(retry_timeout=60).send(VendorRequest.build("GET", "/keys"))

    assert caught.value.retry_at == reset
    assert f"the hourly request budget is spent until {reset:%Y-%m-%d %H:%M:%S} UTC" in str(
        caught.value
    )
    assert len(vendor.requests) == 1


def test_a_429_without_any_wait_is_retried() -> None:
    vendor = Vendor(status(429), OK)

    assert vendor.client().send(VendorRequest.build("GET", "/keys")).status_code == 200
    assert len(vendor.requests) == 2


def test_a_refused_credential_is_retried_once_with_the_fresh_one_reauth_loaded() -> None:
    tokens = iter(["old-token-0123456789", "new-token-0123456789"])
    current = [next(tokens)]

    def reauth() -> bool:
        current[0] = next(tokens)
        return True

    vendor = Vendor(status(401), OK)

    vendor.client(token=lambda: current[0], reauth=reauth).send(
        VendorRequest.build("POST", "/keys")
    )

    assert [r.headers["authorization"] for r in vendor.requests] == [
        "Bearer old-token-0123456789",
        "Bearer new-token-0123456789",
    ]


def test_a_refused_credential_is_not_retried_when_no_fresh_one_came() -> None:
    vendor = Vendor(status(401), OK)

    with pytest.raises(VendorAuthError):
        vendor.client(reauth=lambda: False).send(VendorRequest.build("GET", "/keys"))

    assert len(vendor.requests) == 1


def test_a_credential_refused_again_after_reauth_is_not_retried_twice() -> None:
    vendor = Vendor(status(401))

    with pytest.raises(VendorAuthError):
        vendor.client(reauth=lambda: True).send(VendorRequest.build("GET", "/keys"))

    assert len(vendor.requests) == 2


def test_a_redirect_is_an_error_not_followed() -> None:
    vendor = Vendor(httpx.Response(302, headers={"Location": "https://elsewhere.test/keys"}))

    with pytest.raises(VendorError, match="-> 302"):
        vendor.client().send(VendorRequest.build("GET", "/keys"))

    assert [str(r.url) for r in vendor.requests] == ["https://api.acme.test/keys"]


def test_close_ends_the_connections_of_every_thread_that_called() -> None:
    """Each calling thread has its own client: closing the vendor's closes them all."""
    server = Recorder()
    http = VendorHttp(
        vendor="acme",
        base_url=server.url,
        auth=lambda _: {},
        timeout=5.0,
        read_error=json_error_reader("message"),
    )
    calls = threading.Barrier(8)

    def call(_: int) -> int:
        calls.wait(timeout=10)
        return http.send(VendorRequest.build("GET", "/keys")).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(call, range(8))) == [200] * 8
        assert server.open_connections > 0
        http.close()
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)

        assert server.open_connections == 0
    finally:
        server.stop()


def test_a_cookie_a_vendor_sets_is_not_sent_with_later_calls() -> None:
    """Each call carries only what rotator chose to send: no client-side session state."""
    vendor = Vendor(httpx.Response(200, json={}, headers={"Set-Cookie": "session=abc; Path=/"}))
    http = vendor.client()

    for _ in range(2):
        http.send(VendorRequest.build("GET", "/keys"))

    assert "cookie" not in vendor.requests[1].headers


def test_calls_go_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Recorder()
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    http = VendorHttp(
        vendor="acme",
        base_url="http://api.acme.test",
        auth=lambda _: {},
        timeout=5.0,
        read_error=json_error_reader("message"),
    )
    try:
        http.send(VendorRequest.build("GET", "/keys", params={"page": 2}))
    finally:
        http.close()
        proxy.stop()

    assert [r.path for r in proxy.requests] == ["http://api.acme.test/keys?page=2"]
