"""The `p2pchan` command line: a thin client of the library, the layer-1 node and the node RPC."""
