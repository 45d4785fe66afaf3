"""Every top-level `p2pchan` command: where it is defined, and the line `p2pchan --help` shows.

The root group (`main.py`) imports a command's module only when that command runs
(`lazy_group.py`), so this table is all `p2pchan --help` reads. Each summary is the first
paragraph of the command's own help, the one source of it, written here on one line: a test
(tests/cli/test_lazy_commands.py) fails, naming the command, when a docstring and its line here
differ, and when a command here cannot be loaded. A new command is one line here.

Client commands live in modules that import no server, bench or chaos code; the test checks that
too, in a fresh interpreter.
"""

from __future__ import annotations

from p2pchan_cli.lazy_group import CommandEntry

_CLI = "p2pchan_cli."

COMMANDS: tuple[CommandEntry, ...] = tuple(
    CommandEntry(name, _CLI + module, attribute, summary)
    for name, module, attribute, summary in (
        # The node and its peers, over the RPC socket.
        ("info", "info_commands", "info", "The node's id, uri, version, layer-1 view and counts."),
        ("connect", "info_commands", "connect", "Connect to a peer and keep reconnecting to it."),
        ("peers", "info_commands", "peers", "Connected and remembered peers."),
        (
            "disconnect",
            "info_commands",
            "disconnect",
            "Close the connection to a peer and stop reconnecting to it.",
        ),
        # Channels.
        (
            "open",
            "channel_commands",
            "open_channel",
            "Open a channel with a connected peer, deposit AMOUNT.",
        ),
        (
            "deposit",
            "channel_commands",
            "deposit",
            "Raise our total deposit in a channel to TOTAL.",
        ),
        ("channels", "channel_commands", "channels", "Every channel with its state and balances."),
        (
            "close",
            "channel_commands",
            "close",
            "Close a channel (cooperatively, or alone with --force).",
        ),
        # Payments and invoices.
        ("send", "payment_commands", "send", "Pay a peer without an invoice; waits until final."),
        ("pay", "payment_commands", "pay", "Pay an invoice (p2pc1...); waits until final."),
        ("decode", "payment_commands", "decode", "Show what an invoice asks for."),
        (
            "invoice",
            "payment_commands",
            "invoice",
            "Create an invoice for AMOUNT; print it (p2pc1...).",
        ),
        (
            "payments",
            "payment_commands",
            "payments",
            "Payments sent and received, newest first, a page at a time.",
        ),
        (
            "invoices",
            "payment_commands",
            "invoices",
            "Our invoices, newest first, a page at a time.",
        ),
        (
            "pay-batch",
            "pay_batch",
            "pay_batch",
            "Make every payment in a JSON-lines file; sum up.",
        ),
        # The network as gossip taught it, and our fees.
        (
            "graph",
            "graph_commands",
            "graph",
            "The channels and nodes gossip told us about, with each direction's fees.",
        ),
        (
            "route",
            "graph_commands",
            "route",
            "The hops, amounts and fee a payment of AMOUNT to NODE_ID would use now.",
        ),
        (
            "setfees",
            "graph_commands",
            "setfees",
            "Set what we charge to forward payments over a channel (or all of them).",
        ),
        # Groups: servers, and the tools that start many processes.
        ("l1", "l1_commands", "l1", "Run the toy layer-1 chain and query it."),
        ("node", "node_commands", "node", "Create and run a channel node."),
        (
            "plasma",
            "plasma_commands",
            "plasma",
            "Plasma child chains on the same layer 1: the operator process, its dev attacks, and "
            "the node as the user's wallet and watcher.",
        ),
        # `localnet pay` is defined in its own module, which adds it to the group.
        (
            "localnet",
            "localnet.pay_command",
            "localnet",
            "A local network of real processes from a topology.",
        ),
        (
            "chaos",
            "chaos.command",
            "chaos",
            "Random payments while faults are injected; then heal, settle, check the invariants.",
        ),
        ("demo", "demo", "demo", "A guided tour, with real processes, cleaned up afterwards."),
        ("bench", "bench_commands", "bench", "Measure throughput and latency on this machine."),
    )
)
