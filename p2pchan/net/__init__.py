"""The trio shell: peers, the node, the chain watcher and the control RPC."""
