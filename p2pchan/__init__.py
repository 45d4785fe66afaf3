"""p2pchan: an open payment-channel network over a toy layer-1 chain."""

__version__ = "0.1.0"
