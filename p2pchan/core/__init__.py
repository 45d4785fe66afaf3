"""The sans-IO core: pure state machines, no sockets, no clock, no randomness."""
