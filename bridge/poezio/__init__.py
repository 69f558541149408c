"""An MLS plugin for poezio, the console XMPP client (``docs/POEZIO.md``).

- :mod:`bridge.poezio.session` -- :class:`PoezioSession`: the chat client's XMPP
  session over poezio's own slixmpp client (the ``mls_client`` plugin registered on it);
- :mod:`bridge.poezio.runner` -- :class:`PoezioMLS`: one account's
  :class:`bridge.chat.client.ChatClient` (the member library, its SQLite device store),
  driven by what happens in poezio and written back into its tabs; no poezio import;
- :mod:`bridge.poezio.plugin` -- the module poezio loads (``/load mls``: the
  ``poezio_plugins`` entry point ``mls``): the glue to poezio's plugin API.

Everything MLS and content is the member library's and the chat client's, shared with
``mls-bridge chat``; nothing here encrypts, decrypts or formats by itself.
"""
