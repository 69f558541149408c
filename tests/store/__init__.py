"""Tests of the hub's stores (bridge.store): one contract suite for every backend."""
