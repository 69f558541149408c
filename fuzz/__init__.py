"""Fuzzing of every decoder the project exposes to the network.

* :mod:`fuzz.seeds` -- valid inputs: messages our own code produces in a real group,
  and the official mlswg vector files (read at run time from ``MLS_TEST_VECTORS_DIR``,
  default ``../shared/test-vectors``; never copied into the project).
* :mod:`fuzz.mutate` -- a structure-aware mutator over those seeds (TLS-style length
  prefixes for MLS bytes; elements and attributes for XMPP XML; JSON values for Matrix
  events; CBOR items for the content format), plus plain byte mutations.
* :mod:`fuzz.families` -- one target per decoder family and what may escape it.
* :mod:`fuzz.run` -- the long runner (``python -m fuzz.run --family mls-message
  --inputs 1000000``), coverage-guided with atheris when it is installed, else the
  mutator alone.

``tests/fuzz`` runs the same targets, bounded, under Hypothesis in CI.
"""
