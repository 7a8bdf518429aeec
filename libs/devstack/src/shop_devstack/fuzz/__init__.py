"""`make fuzz`: hostile gRPC requests to every RPC and poison events to every consumed topic,
against a stack of its own; a verdict at the end (see run.py)."""
