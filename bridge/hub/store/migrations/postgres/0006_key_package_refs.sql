-- Every KeyPackage the directory holds or held, by ref, until it expires: the hub ties
-- an Add of a basic credential to the directory (the added KeyPackage must be one its
-- named user published, RFC 9420 §5.3.1 with the hub as the AS), also after the
-- KeyPackage was claimed. Rows go with Store.purge_expired.
CREATE TABLE key_package_refs (
    ref        BYTEA   PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE INDEX key_package_refs_expiry ON key_package_refs (expires_at);

INSERT INTO key_package_refs (ref, user_id, expires_at)
    SELECT ref, user_id, expires_at FROM key_packages;
