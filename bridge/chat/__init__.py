"""``mls-bridge chat``: a terminal chat client (Textual) for one XMPP or one Matrix
account, an application above the member library (everything MLS is there, shared with
other clients such as a poezio plugin).

- :mod:`bridge.chat.main` -- the command line: account, password source, device store;
- :mod:`bridge.chat.app` -- the screen: rooms with unread counts, timeline, input line;
- :mod:`bridge.chat.commands` -- the input line's commands (``/help``);
- :mod:`bridge.chat.client` -- :class:`ChatClient`: the member, its rooms, joining,
  adding and removing, history and read positions in the device store;
- :mod:`bridge.chat.messages` -- sending text, replies, edits, retractions, reactions
  and encrypted files; saving received files;
- :mod:`bridge.chat.model` -- a room's timeline built from decrypted messages;
- :mod:`bridge.chat.membership` -- membership notices (who added, removed, joined whom);
- :mod:`bridge.chat.session` -- what differs between the networks (:class:`Session`),
  :mod:`bridge.chat.xmpp_session` and :mod:`bridge.chat.matrix_session`.
"""
