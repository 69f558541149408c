"""Tests of the hub's stores (bridge.hub.store): one contract suite for every backend."""
