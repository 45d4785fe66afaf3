"""Gossip: the pure machine that learns the channel graph from peers and layer 1."""
