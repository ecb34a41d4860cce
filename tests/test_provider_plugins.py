"""Vendors from outside the tree: a provider package installed with pip, found and checked.

The example plugin (tests/plugin_example) is installed with pip into a directory
put on the path, as a platform team installs its own next to rotator.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from rotator.config.loader import Config, parse_config
from rotator.errors import ConfigError
from rotator.providers.registry import provider_class, provider_origin
from tests.support.rig import Rig

PLUGIN_SOURCE = Path(__file__).parent / "plugin_example"
PROVIDER_TARGET = "rotator_plugin_example.provider:ExampleKeysProvider"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, installed by pip into its own site directory."""
    site = tmp_path_factory.mktemp("plugin-site")
    # Built from a copy: setuptools writes its egg-info next to the sources it builds.
    source = shutil.copytree(
        PLUGIN_SOURCE,
        tmp_path_factory.mktemp("plugin-src") / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


@pytest.fixture
def installed(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed plugin on this process's path (and, through PYTHONPATH, a child's)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")])),
    )
    monkeypatch.setenv("T", "token-value-123")
    return plugin_site


def config_with_type(type_name: str) -> str:
    return textwrap.dedent(
        f"""\
        vault: {{address: "http://127.0.0.1:8200", auth: {{method: token, token: "${{T}}"}}}}
        providers:
          example: {{type: "{type_name}", token: "${{T}}", base_url: "http://127.0.0.1:9/v1"}}
        policies:
          ci-bot:
            provider: example
            key: {{account: ci-bot}}
            schedule: {{every: 30d}}
            vault: {{path: ci/bot}}
        """
    )


def load(type_name: str) -> Config:
    return parse_config(config_with_type(type_name), "rotator.yaml", provider_class)


def refused(type_name: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(type_name)
    assert caught.value.exit_code == 2
    return str(caught.value)


def write_module(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))


def test_an_installed_plugin_is_found_by_its_entry_point(installed: Path) -> None:
    config = load("example_keys")

    assert config.policies["ci-bot"].provider_class.__name__ == "ExampleKeysProvider"


def test_a_plugin_cannot_take_over_a_built_in_name(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info = tmp_path / "shadow_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shadow-plugin\nVersion: 0.1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[rotator.providers]\nh2ogpte = {PROVIDER_TARGET}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    assert provider_origin("h2ogpte").builtin


def test_built_in_types_are_found_without_scanning_installed_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_scan(**_: object) -> None:
        raise AssertionError("every installed package was scanned for a built-in type")

    # A CronJob's idle 'rotate due' loads the configuration every few minutes: no scan there.
    monkeypatch.setattr(importlib.metadata, "entry_points", no_scan)

    assert provider_origin("h2ogpte").target == "rotator.providers.h2ogpte:H2oGpteProvider"


def test_a_type_naming_a_class_directly_is_loaded(installed: Path) -> None:
    config = load(PROVIDER_TARGET)

    assert config.policies["ci-bot"].provider_type == "example_keys"
    origin = provider_origin(PROVIDER_TARGET)
    assert (origin.distribution, origin.version) == ("rotator-plugin-example", "0.1.0")


def test_validate_names_the_plugin_and_its_version(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(config_with_type("example_keys"))

    result = subprocess.run(
        [sys.executable, "-m", "rotator", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert (
        "provider plugin example_keys: rotator-plugin-example 0.1.0 "
        f"({PROVIDER_TARGET})" in result.stdout
    )


def test_a_plugin_with_malformed_capabilities_is_refused(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(
        tmp_path,
        "no_strategies",
        """
        from rotator.providers.base import Capabilities
        from rotator_plugin_example.provider import ExampleKeysProvider

        class Provider(ExampleKeysProvider):
            capabilities = Capabilities(strategies=frozenset(), can_verify=True)
        """,
    )

    message = refused("no_strategies:Provider")

    assert (
        "providers.example.type: provider 'no_strategies:Provider' from no_strategies:Provider "
        "(not from an installed package) breaks the provider contract" in message
    )
    assert "capabilities.strategies must be a non-empty set of Strategy members" in message


def test_a_plugin_whose_selector_model_is_not_a_key_selector_is_refused(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(
        tmp_path,
        "plain_selector",
        """
        from pydantic import BaseModel
        from rotator_plugin_example.provider import ExampleKeysProvider

        class Selector(BaseModel):
            account: str

        class Provider(ExampleKeysProvider):
            selector_model = Selector
        """,
    )

    message = refused("plain_selector:Provider")

    assert "selector_model must be a subclass of rotator.providers.base.KeySelector" in message


def test_a_type_naming_a_missing_module_is_refused(installed: Path) -> None:
    message = refused("not_installed_anywhere.provider:Provider")

    assert "cannot be loaded (No module named 'not_installed_anywhere')" in message


def test_an_unknown_type_lists_the_installed_ones_and_how_to_add_one(installed: Path) -> None:
    message = refused("acme")

    assert (
        "unknown provider type 'acme'; use one of: digitalocean_gradient, example_keys" in message
    )
    assert "install the package that provides it" in message


def test_a_plugin_rotates_end_to_end(installed: Path, rig_factory: Callable[[str], Rig]) -> None:
    rig = rig_factory("example_keys")
    spec = rig.add_policy("plugin", strategy="create_then_delete", grace="1h")

    # Its own process: the installed plugin is found on PYTHONPATH through its entry point.
    result = rig.run_process("rotate", "now", "plugin", env={"PYTHONPATH": str(installed)})

    assert result.returncode == 0, result.stderr
    new_secret = rig.vault_secret("plugin")
    assert new_secret != spec.slot.secret
    assert rig.vendor_accepts("plugin", new_secret)
    assert rig.vault_metadata("plugin")["rotator.api_key.key_id"] in rig.live_keys("plugin")


def test_sandbox_serves_a_plugins_emulator(installed: Path) -> None:
    env = {**os.environ, "SANDBOX_TOKEN": "sandbox-token-0123456789"}
    serve = [sys.executable, "-m", "rotator", "sandbox", "serve"]
    serving = subprocess.Popen(
        [*serve, "--vendor", "example_keys", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert serving.stdout is not None
        first_line = serving.stdout.readline()
    finally:
        serving.kill()
        serving.wait(timeout=30)

    assert first_line.startswith("example_keys emulator at http://127.0.0.1:")


def test_sandbox_refuses_a_vendor_without_an_emulator(installed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "serve", "--vendor", "acme"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "'acme' is not one of 'digitalocean_gradient', 'example_keys'" in result.stderr


def test_the_contract_suite_fails_a_provider_that_breaks_the_contract(
    installed: Path, tmp_path: Path
) -> None:
    write_module(
        tmp_path,
        "test_broken_plugin",
        """
        from rotator_plugin_example.emulator import ExampleKeysEmulator
        from rotator_plugin_example.provider import ExampleKeysProvider, _vendor_key
        from rotator.testing import ProviderContract

        class Careless(ExampleKeysProvider):
            def list_keys(self, selector):
                body = self._http.send(self._list_request(selector, 1)).json()
                return [_vendor_key(info) for info in body["keys"]]

            def revoke_key(self, selector, key_id):
                self._http.send(self._delete_request(selector, key_id))

        class TestCareless(ProviderContract):
            provider_class = Careless
            emulator_class = ExampleKeysEmulator
            small_pages = {"page_size": 2}
        """,
    )

    pytest_run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    result = subprocess.run(
        [*pytest_run, "test_broken_plugin.py", "-k", "every_page or revoking_twice"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )

    assert result.returncode == 1, result.stdout
    assert "FAILED test_broken_plugin.py::TestCareless::test_every_page_is_listed" in result.stdout
    assert (
        "FAILED test_broken_plugin.py::TestCareless::test_revoking_twice_succeeds" in result.stdout
    )
