"""The toy layer-1 chain: accounts, blocks, the channel contract and the secret registry."""
