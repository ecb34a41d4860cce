"""Loopback emulators of vendor key APIs, for tests and for trying rotator out.

Each emulator follows its vendor's contract (paths, bodies, status codes,
pagination, errors, rate limits), keeps real state, and can be told to fail:
answer 429 or 5xx, time out, or hold a call open so a test can kill the
client at an exact point.
"""
