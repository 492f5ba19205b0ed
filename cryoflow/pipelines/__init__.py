"""Pipelines: the only layer that takes a Client, computes, writes results and reports progress."""
