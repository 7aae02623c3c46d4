"""Protocols the host itself provides (plugins add streams, episodes, rounds)."""
