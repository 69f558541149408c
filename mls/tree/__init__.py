"""The ratchet tree of MLS (RFC 9420 §4, §7, Appendix C)."""
