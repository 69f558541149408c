"""Tests of the MLS core (mls/): unit, property and conformance tests; shared fixtures in
:mod:`tests.mls.fixtures`."""
