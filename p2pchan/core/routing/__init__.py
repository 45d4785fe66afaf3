"""Routing: the channel graph, the cheapest route that fits, and mission control."""
