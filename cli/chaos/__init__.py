"""Chaos runs: random payments while faults are injected, then the invariants checked."""
