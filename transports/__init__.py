"""XMPP and Matrix transports (not yet built: see docs/ARCHITECTURE.md)."""
