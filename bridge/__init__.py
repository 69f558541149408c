"""The group manager, delivery hub and bridge (not yet built: see docs/ARCHITECTURE.md)."""
