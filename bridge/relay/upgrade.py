"""Puppets of earlier versions, brought up to date when the relay starts.

Earlier versions kept each puppet's keys and group state in the hub store's cursors
(``relay:puppets``, the list; ``relay:<identity>:<key>`` base64 values with a
``relay:<identity>:#keys`` index) and named the puppet by the legacy user's own network
identity. On start (:func:`bring_back`):

* :func:`migrate_from_cursors` moves that state into the secrets file
  (:mod:`bridge.relay.secrets_file`) and blanks those cursors;
* :func:`retire_unmarked` retires each puppet named by a network identity: the hub
  removes exactly the leaf it held (by its signature key, so the user's own leaves
  stay; reason ``replaced``) and its secrets are forgotten; the user gets a ``relay+``
  puppet when next seen in a relayed room.
"""

from __future__ import annotations

import base64
import json
import logging

from bridge.errors import Rejection
from bridge.hub import Hub
from bridge.hub.removals import REPLACED, Removal
from bridge.hub.store import Store
from bridge.identities import identity_of, is_relayed, relay_identity
from bridge.member import GroupSlot
from bridge.relay.secrets_file import PuppetSecrets

log = logging.getLogger(__name__)

#: The hub-store cursor of earlier versions listing their puppets.
OLD_PUPPETS_CURSOR = "relay:puppets"


async def bring_back(store: Store, hub: Hub, secrets_store: PuppetSecrets) -> list[str]:
    """Migrate and retire earlier versions' puppets; the relay identities of the
    puppets to run."""
    moved = await migrate_from_cursors(store, secrets_store)
    if moved:
        log.info("relay: moved %d puppet(s) out of the hub store", len(moved))
    running = []
    for identity in await secrets_store.puppets():
        if is_relayed(identity):
            running.append(identity)
        else:
            await retire_unmarked(hub, secrets_store, identity)
    return running


async def migrate_from_cursors(store: Store, secrets_store: PuppetSecrets) -> list[str]:
    """Move the puppets an earlier version kept in the hub store's cursors into the
    secrets file, then blank those cursors (a crash in between repeats the copy, which
    is idempotent). Returns the identities moved (as the earlier version named them)."""
    listed = await store.get_cursor(OLD_PUPPETS_CURSOR)
    if not listed:
        return []
    moved = []
    for identity in json.loads(listed):
        prefix = f"relay:{identity}:"
        index = await store.get_cursor(prefix + "#keys")
        items: dict[str, bytes] = {}
        for key in json.loads(index) if index else []:
            value = await store.get_cursor(prefix + key)
            if value:
                items[key] = base64.b64decode(value)
        await secrets_store.import_puppet(identity, items)
        for key in items:
            await store.set_cursor(prefix + key, "")
        await store.set_cursor(prefix + "#keys", "")
        moved.append(identity)
    await store.set_cursor(OLD_PUPPETS_CURSOR, "")
    return moved


async def retire_unmarked(hub: Hub, secrets_store: PuppetSecrets, old: str) -> None:
    """Retire the puppet ``old``, named by a network identity (see the module
    docstring)."""
    for key in await secrets_store.keys(old, "group:"):
        data = await secrets_store.load(old, key)
        if data is None:
            continue
        group = GroupSlot.from_bytes(data).group
        if not group.active:
            continue
        leaf = dict(group.members()).get(group.own_leaf)
        if leaf is None or identity_of(leaf.credential, hub.anchor) != old:
            continue
        try:
            await hub.remove_member(group.group_id, old,
                                    Removal(REPLACED, relay_identity(old)),
                                    signature_key=leaf.signature_key)
        except (Rejection, ValueError) as exc:
            log.info("relay: an old puppet leaf was not removed: %s", exc)
    await secrets_store.remove_puppet(old)
    log.info("relay: retired a puppet named before relay identities")


__all__ = ["OLD_PUPPETS_CURSOR", "bring_back", "migrate_from_cursors", "retire_unmarked"]
