"""Runnable services: the hub wired to a store and a transport in one process."""
