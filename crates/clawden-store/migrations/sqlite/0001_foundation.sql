-- Accounts, instances, memberships, sessions, invites and the audit log.
-- Ids are UUID text; times are Unix milliseconds; flags are 0/1 integers.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    tier            TEXT NOT NULL CHECK (tier IN ('base', 'invite')),
    platform_admin  INTEGER NOT NULL DEFAULT 0,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE members (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'user')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    code_hash   BLOB NOT NULL UNIQUE,
    uses_left   INTEGER NOT NULL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL
);

-- One row per chain: the next sequence number is taken here, under the row's write lock, so
-- concurrent writers never race for the same number.
CREATE TABLE audit_sequences (
    chain     TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id              TEXT PRIMARY KEY,
    chain           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    actor_user_id   TEXT,
    instance_id     TEXT,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    ip              TEXT,
    details         BLOB,
    mac             BLOB,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_actor ON audit_log (actor_user_id, at);
CREATE INDEX audit_instance ON audit_log (instance_id, at);
