"""Helpers shared by the test suites: real servers and configuration builders."""
