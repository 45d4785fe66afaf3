"""Keys, domain-tagged signatures, hashes and the Noise handshake."""
