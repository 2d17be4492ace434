-- API keys, stored credentials, TOTP, recovery codes and gateway tokens. Tokens and codes are
-- stored only as keyed hashes; credential values and TOTP secrets only sealed under the
-- owner's data key (associated data names table, column, row and owner).

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    key_hash      BYTEA NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE credentials (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    value       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE totp (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret      BYTEA NOT NULL,
    enabled     BIGINT NOT NULL DEFAULT 0,
    last_step   BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE gateway_tokens (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    retires_at   BIGINT
);
CREATE INDEX gateway_tokens_instance ON gateway_tokens (instance_id);
