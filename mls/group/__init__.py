"""The group layer of MLS (RFC 9420 §10-§12): key packages, proposal validation and
application, commits, joining, and the group state machine (sans-I/O)."""
