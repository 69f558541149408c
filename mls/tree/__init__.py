"""The ratchet tree of MLS (RFC 9420 §4, §7, Appendix C).

* :mod:`mls.tree.math` -- array-based tree math with distinct leaf/node index types.
* :mod:`mls.tree.ratchet_tree` -- :class:`RatchetTree` with cached tree hashes.
* :mod:`mls.tree.tree_hash`, :mod:`mls.tree.parent_hash` -- §7.8 and §7.9.
* :mod:`mls.tree.validation` -- checks of a received tree (§12.4.3.1).
* :mod:`mls.tree.treekem` -- UpdatePath creation, merge and decryption (§7.4-§7.6).
"""

from mls.tree.math import LeafIndex, NodeIndex
from mls.tree.ratchet_tree import RatchetTree

__all__ = ["LeafIndex", "NodeIndex", "RatchetTree"]
