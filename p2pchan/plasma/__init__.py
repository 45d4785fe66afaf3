"""Plasma MVP child chains: the pure core (blocks, UTXOs, exits, the operator and watcher
machines) and the operator process's shell."""
