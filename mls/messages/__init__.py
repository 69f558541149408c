"""Wire structs of RFC 9420 (§§5-12): frozen dataclasses with hand-written codecs."""
