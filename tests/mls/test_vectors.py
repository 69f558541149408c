"""One test per case of the official mlswg vectors (RFC 9420 conformance).

Vectors come from ``MLS_TEST_VECTORS_DIR`` (default ``../shared/test-vectors``); a
missing directory or file fails collection -- it is never a skip.
"""

from __future__ import annotations

import pytest

from mls.vectors import LabelledCase, all_cases, checker

CASES = list(all_cases())


@pytest.mark.parametrize("labelled", CASES, ids=[c.ident for c in CASES])
def test_vector(labelled: LabelledCase) -> None:
    checker(labelled.kind)(labelled.case)
