-- The key store, kept apart from the data: wrapped data keys and the wrapped server pepper.
CREATE TABLE wrapped_keys (
    owner        TEXT PRIMARY KEY,
    kek_version  INTEGER NOT NULL,
    wrapped      BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX wrapped_keys_version ON wrapped_keys (kek_version);
