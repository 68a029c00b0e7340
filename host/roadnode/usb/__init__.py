"""Talking to a node (real or simulated) over its USB serial console."""
