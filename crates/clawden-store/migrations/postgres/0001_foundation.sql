-- Accounts, instances, memberships, sessions, invites and the audit log.
-- Ids are UUID text; times are Unix milliseconds; flags are 0/1 integers.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    tier            TEXT NOT NULL CHECK (tier IN ('base', 'invite')),
    platform_admin  BIGINT NOT NULL DEFAULT 0,
    disabled        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE members (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'user')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (instance_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    BYTEA NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    code_hash   BYTEA NOT NULL UNIQUE,
    uses_left   BIGINT NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);

-- One row per chain: the next sequence number is taken here, under the row's write lock, so
-- concurrent writers never race for the same number.
CREATE TABLE audit_sequences (
    chain     TEXT PRIMARY KEY,
    last_seq  BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id              TEXT PRIMARY KEY,
    chain           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    actor_user_id   TEXT,
    instance_id     TEXT,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    ip              TEXT,
    details         BYTEA,
    mac             BYTEA,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_actor ON audit_log (actor_user_id, at);
CREATE INDEX audit_instance ON audit_log (instance_id, at);
