"""Local networks: topologies, the processes of a network, scripted payments across it."""
