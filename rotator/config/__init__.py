"""Configuration: the YAML file, its credential references, and their checks."""
