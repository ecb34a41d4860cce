"""Vendor providers: one module per vendor, each a thin HTTP client plus a ``Provider``."""
