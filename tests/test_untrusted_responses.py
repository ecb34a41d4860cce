"""Vendor answers are untrusted: odd, huge, slow or endless answers fail a call clearly and fast.

Each vendor's provider runs in process against its emulator over a real
socket; the emulator's fault switches play the proxy, the outage page and
the misbehaving server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from rotator.errors import VendorError, VendorRateLimited, VendorUnavailable
from rotator.providers.base import Provider
from rotator.providers.registry import VENDORS, provider_class
from rotator.providers.responses import MAX_BODY_BYTES, MAX_PAGES
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import EmulatorServer, Slot
from rotator.secret import Secret
from tests.support.rig import MANAGEMENT_TOKEN, Rig

HTML = "<html><body><h1>502 Bad Gateway</h1><p>cloudflare</p></body></html>"
#: A list answer that always offers one more page, in each paging vendor's words.
ENDLESS_PAGE = {
    "digitalocean_gradient": {"api_key_infos": [{"uuid": "k"}], "meta": {"pages": 10**6}},
    "h2ogpte": [{"id": "k", "user_id": "u"}],
    "scale_agentex": [{"id": "k", "api_key_type": "external"}],
}


@dataclass
class Vendor:
    name: str
    server: EmulatorServer
    provider: Provider[Any, Any]
    slot: Slot
    selector: Any

    def fault(self, operation: str, **switches: Any) -> None:
        method, path = self.server.emulator.operations[operation]
        self.server.fail(method, path, **switches)

    def list_fault(self, **switches: Any) -> None:
        self.server.fail("GET", ".", **switches)

    def create(self) -> Any:
        secret = self.provider.generate_secret()
        chosen = secret if self.provider.capabilities.caller_chooses_secret else None
        return self.provider.create_key(self.selector, "rotator-t-0123abcd", chosen, replacing=None)


def start(vendor: str, **settings: Any) -> Iterator[Vendor]:
    server = EmulatorServer(emulator_class(vendor)({MANAGEMENT_TOKEN})).start()
    cls = provider_class(vendor)
    slot = server.emulator.seed_slot()
    config = {"type": vendor, "token": Secret(MANAGEMENT_TOKEN), "base_url": server.vendor_url}
    provider = cls(
        cls.settings_model.model_validate({**config, **settings}), Secret(MANAGEMENT_TOKEN)
    )
    yield Vendor(vendor, server, provider, slot, cls.selector_model.model_validate(slot.selector))
    provider.close()
    server.stop()


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    yield from start(request.param, timeout=1.0)


def test_an_html_answer_to_create_is_a_vendor_error_naming_the_call(vendor: Vendor) -> None:
    vendor.fault("create", status=200, body=HTML)

    with pytest.raises(VendorError) as caught:
        vendor.create()

    message = str(caught.value)
    assert f"{vendor.provider.vendor_name} POST" in message
    assert "not JSON (text/html" in message
    assert "cloudflare" not in message


def test_an_html_answer_to_a_listing_is_a_vendor_error(vendor: Vendor) -> None:
    vendor.list_fault(status=200, body=HTML, times=10)

    with pytest.raises(VendorError, match="not JSON"):
        vendor.provider.list_keys(vendor.selector)


def test_an_answer_nested_beyond_reason_is_a_vendor_error(vendor: Vendor) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    vendor.fault("create", status=201, body=nested, content_type="application/json")

    with pytest.raises(VendorError, match="not JSON"):
        vendor.create()


def test_an_error_answer_nested_beyond_reason_is_described_not_parsed(vendor: Vendor) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    vendor.fault("create", status=400, body=nested, content_type="application/json")

    with pytest.raises(VendorError, match="-> 400"):
        vendor.create()


def test_a_create_answer_of_the_wrong_shape_names_what_is_wrong_but_never_its_content(
    vendor: Vendor,
) -> None:
    leaked = "sk-the-new-secret-0123456789"
    vendor.fault("create", status=201, body=json.dumps([leaked]), content_type="application/json")

    with pytest.raises(VendorError) as caught:
        vendor.create()

    message = str(caught.value)
    assert "answered JSON rotator does not understand" in message
    assert "should be an object" in message
    assert leaked not in message


def test_a_create_answer_missing_its_fields_names_them(vendor: Vendor) -> None:
    vendor.fault("create", status=201, body="{}", content_type="application/json")

    with pytest.raises(VendorError, match="Field required"):
        vendor.create()


def test_an_oversized_answer_is_refused_without_reading_it_all(vendor: Vendor) -> None:
    vendor.fault("create", status=200, size=MAX_BODY_BYTES + 1)

    with pytest.raises(VendorError, match="answered more than 2 MiB"):
        vendor.create()


def test_a_trickled_answer_ends_the_call_at_its_deadline(vendor: Vendor) -> None:
    vendor.fault("create", status=200, trickle=0.02)

    with pytest.raises(VendorUnavailable, match="did not arrive within the 1s timeout"):
        vendor.create()


def test_a_retry_after_beyond_the_retry_budget_fails_at_once_carrying_the_vendors_time(
    vendor: Vendor,
) -> None:
    vendor.fault("create", status=429, retry_after=3600)

    with pytest.raises(VendorRateLimited) as caught:
        vendor.create()

    assert caught.value.retry_after == 3600
    assert "asks to wait 3600s" in str(caught.value)
    assert vendor.server.calls("POST") == 1


def test_a_retry_after_given_as_an_http_date_is_understood(vendor: Vendor) -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    vendor.fault("create", status=429, retry_after=format_datetime(when, usegmt=True))

    with pytest.raises(VendorRateLimited) as caught:
        vendor.create()

    assert caught.value.retry_after == pytest.approx(7200, abs=5)


@pytest.mark.parametrize("name", sorted(ENDLESS_PAGE))
def test_a_listing_that_never_ends_fails_after_the_page_cap(name: str) -> None:
    size = {"per_page": 1} if name == "digitalocean_gradient" else {"page_size": 1}
    for vendor in start(name, **size):
        body = json.dumps(ENDLESS_PAGE[name])
        vendor.list_fault(status=200, body=body, content_type="application/json", times=10**4)

        with pytest.raises(VendorError, match=f"still had more pages after {MAX_PAGES}"):
            vendor.provider.list_keys(vendor.selector)

        assert vendor.server.calls("GET") == MAX_PAGES


def test_an_html_answer_at_mint_fails_the_rotation_cleanly_and_keeps_the_old_key(
    rig: Rig,
) -> None:
    spec = rig.add_policy("app", strategy=rig.strategy, grace="0s")
    operation = "regenerate" if rig.strategy == "regenerate" else "create"
    method, path = rig.emulator.operations[operation]
    rig.server.validator = None  # the HTML page is the point, not a contract violation
    rig.server.fail(method, path, status=200, body=HTML)

    result = rig.run("rotate", "now", "app", "--json")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["result"] == "failed"
    assert "not JSON" in outcome["message"]
    assert rig.vault_secret("app") == spec.slot.secret


def test_an_answer_whose_encoding_is_broken_is_a_vendor_error(vendor: Vendor) -> None:
    vendor.list_fault(status=200, body="not gzip at all", headers={"content-encoding": "gzip"})

    with pytest.raises(VendorError, match="content-encoding gzip"):
        vendor.provider.list_keys(vendor.selector)


def test_an_html_error_page_is_described_not_quoted(vendor: Vendor) -> None:
    vendor.fault("create", status=502, body=HTML)

    with pytest.raises(VendorError) as caught:
        vendor.create()

    message = str(caught.value)
    assert "502" in message
    assert "a text/html body" in message
    assert "cloudflare" not in message


def test_the_sandbox_control_api_sets_the_untrusted_answer_faults(vendor: Vendor) -> None:
    fault = {"method": "GET", "path": ".", "status": 200, "body": HTML, "times": 5}
    httpx.post(f"{vendor.server.base_url}/_sandbox/faults", json=fault).raise_for_status()

    with pytest.raises(VendorError, match="not JSON"):
        vendor.provider.list_keys(vendor.selector)


def test_a_retry_after_beyond_the_budget_schedules_the_next_attempt_at_the_vendors_time(
    rig: Rig,
) -> None:
    rig.add_policy("app", strategy=rig.strategy, grace="0s")
    operation = "regenerate" if rig.strategy == "regenerate" else "create"
    method, path = rig.emulator.operations[operation]
    rig.server.fail(method, path, status=429, retry_after=3600)
    before = datetime.now(UTC)

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "failed"
    store = rig.store()
    rotation = store.active_rotation("app")
    store.dispose()
    assert rotation is not None
    assert rotation.next_attempt_at is not None
    assert rotation.next_attempt_at >= before + timedelta(seconds=3600)
