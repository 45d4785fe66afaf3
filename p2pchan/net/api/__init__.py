"""The node's JSON-RPC methods, by area: the node and its peers, channels, payments, Plasma. Each is
thin: it parses its parameters, feeds the node's transition (through the driver) or reads its
state, and shapes the answer."""
