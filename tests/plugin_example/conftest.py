"""The example plugin's own tests run from its source tree, as in the plugin's repository.

pytest puts this directory (no ``__init__.py``) on ``sys.path``, so
``rotator_plugin_example`` imports from source here; tests/test_provider_plugins.py
installs it with pip to check that rotator finds it through its entry points.
"""
