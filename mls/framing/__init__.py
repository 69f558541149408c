"""Message protection (RFC 9420 §6) and Welcome protection (RFC 9420 §12.4.3).

``public``: PublicMessage signing, membership tag and verification.
``private``: PrivateMessage content and sender-data encryption with the secret tree.
``welcome``: GroupSecrets / GroupInfo encryption and decryption, GroupInfo signatures.
``refs``: KeyPackageRef and ProposalRef (RFC 9420 §5.2).
"""
