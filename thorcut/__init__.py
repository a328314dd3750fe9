"""thorcut: per-feature REST-to-WebSocket cutover for a trading backend, proven by parity."""

__version__ = "0.1.0"
