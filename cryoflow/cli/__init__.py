"""Thin command-line layer: parse arguments into typed config, call one pipeline."""
