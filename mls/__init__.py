"""A pure-Python implementation of Messaging Layer Security, RFC 9420.

The package is synchronous and sans-I/O: no asyncio, no clock, no randomness of its
own.  Time and randomness are parameters of the operations that need them.
"""
