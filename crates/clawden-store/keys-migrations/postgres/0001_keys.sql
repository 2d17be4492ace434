-- The key store, kept apart from the data: wrapped data keys and the wrapped server pepper.
CREATE TABLE wrapped_keys (
    owner        TEXT PRIMARY KEY,
    kek_version  BIGINT NOT NULL,
    wrapped      BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX wrapped_keys_version ON wrapped_keys (kek_version);
