"""Welcome protection (RFC 9420 §12.4.3.1) and GroupInfo signatures (§12.4.3).

The committer encrypts the GroupInfo once under a key derived from the welcome
secret, and the GroupSecrets to each joiner's KeyPackage init key with
EncryptWithLabel(init_key, "Welcome", encrypted_group_info, group_secrets).
Validation of the tree and the join itself belong to the group layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from mls.codec import decode, encode
from mls.crypto import CipherSuite
from mls.errors import SignatureError, UsageError, ValidationError
from mls.messages.key_package import KeyPackage
from mls.messages.tree_nodes import HPKECiphertext
from mls.messages.welcome import EncryptedGroupSecrets, GroupInfo, GroupSecrets, Welcome
from mls.schedule.key_schedule import welcome_key_nonce

WELCOME_LABEL = b"Welcome"
GROUP_INFO_LABEL = b"GroupInfoTBS"


def sign_group_info(cs: CipherSuite, signature_priv: bytes, group_info: GroupInfo) -> GroupInfo:
    """SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) (RFC 9420 §12.4.3)."""
    signature = cs.sign_with_label(signature_priv, GROUP_INFO_LABEL, group_info.tbs_bytes())
    return group_info.replace(signature=signature)


def verify_group_info(cs: CipherSuite, group_info: GroupInfo, signer_pub: bytes) -> None:
    """Verify a GroupInfo signature with the signer leaf's key; SignatureError if not."""
    if not cs.verify_with_label(signer_pub, GROUP_INFO_LABEL, group_info.tbs_bytes(),
                                group_info.signature):
        raise SignatureError("GroupInfo signature does not verify")


def encrypt_group_info(cs: CipherSuite, welcome_secret: bytes, group_info: GroupInfo) -> bytes:
    """AEAD-encrypt the signed GroupInfo with welcome_key/welcome_nonce (§12.4.3.1)."""
    key, nonce = welcome_key_nonce(cs, welcome_secret)
    return cs.aead_encrypt(key, nonce, b"", encode(group_info))


def decrypt_group_info(cs: CipherSuite, welcome_secret: bytes,
                       encrypted_group_info: bytes) -> GroupInfo:
    """Decrypt and parse the Welcome's GroupInfo (§12.4.3.1); CryptoError on a bad tag."""
    key, nonce = welcome_key_nonce(cs, welcome_secret)
    return decode(GroupInfo, cs.aead_decrypt(key, nonce, b"", encrypted_group_info))


def seal_group_secrets(cs: CipherSuite, key_package_ref: bytes, init_key: bytes,
                       encrypted_group_info: bytes,
                       group_secrets: GroupSecrets) -> EncryptedGroupSecrets:
    """EncryptWithLabel(init_key, "Welcome", encrypted_group_info, group_secrets)."""
    kem_output, ciphertext = cs.encrypt_with_label(init_key, WELCOME_LABEL,
                                                   encrypted_group_info,
                                                   encode(group_secrets))
    return EncryptedGroupSecrets(key_package_ref, HPKECiphertext(kem_output, ciphertext))


def build_welcome(cs: CipherSuite, welcome_secret: bytes, group_info: GroupInfo,
                  joiners: Sequence[tuple[bytes, bytes, GroupSecrets]]) -> Welcome:
    """A Welcome for ``joiners`` = (KeyPackageRef, init_key, GroupSecrets) (§12.4.3.1)."""
    encrypted_group_info = encrypt_group_info(cs, welcome_secret, group_info)
    sealed = cs.encrypt_with_label_many(
        [(init_key, encode(gs)) for _, init_key, gs in joiners], WELCOME_LABEL,
        encrypted_group_info)
    secrets = tuple(EncryptedGroupSecrets(ref, HPKECiphertext(kem_output, ciphertext))
                    for (ref, _, _), (kem_output, ciphertext) in zip(joiners, sealed,
                                                                     strict=True))
    return Welcome(cs.id, secrets, encrypted_group_info)


def find_my_secrets(welcome: Welcome, key_package_ref: bytes) -> EncryptedGroupSecrets:
    """The Welcome entry for our KeyPackage; ValidationError if there is none."""
    for entry in welcome.secrets:
        if entry.new_member == key_package_ref:
            return entry
    raise ValidationError("the Welcome holds no entry for this KeyPackage")


def open_group_secrets(cs: CipherSuite, welcome: Welcome, key_package: KeyPackage,
                       key_package_ref: bytes, init_priv: bytes) -> GroupSecrets:
    """Find and decrypt our GroupSecrets (RFC 9420 §12.4.3.1, first two steps)."""
    if welcome.cipher_suite != key_package.cipher_suite or welcome.cipher_suite != cs.id:
        raise ValidationError("Welcome cipher suite does not match the KeyPackage")
    entry = find_my_secrets(welcome, key_package_ref)
    if len(init_priv) == 0:
        raise UsageError("the KeyPackage's init private key is required")
    plaintext = cs.decrypt_with_label(init_priv, WELCOME_LABEL, welcome.encrypted_group_info,
                                      entry.encrypted_group_secrets.kem_output,
                                      entry.encrypted_group_secrets.ciphertext)
    return decode(GroupSecrets, plaintext)
