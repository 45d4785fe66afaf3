"""The channel machine: one channel between us and one partner, both directions."""
