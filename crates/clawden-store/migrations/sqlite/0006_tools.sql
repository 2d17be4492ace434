-- Tool policies (sealed under the instance's key: they hold egress domains and commands
-- approved for good) and approvals of elevated tool calls (arguments sealed the same way).

CREATE TABLE tool_policies (
    instance_id  TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    body         BLOB NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tool             TEXT NOT NULL,
    arguments        BLOB NOT NULL,
    digest           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'allowed', 'denied', 'expired')),
    always           INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    decided_at       INTEGER,
    decided_by       TEXT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX approvals_pending ON approvals (instance_id, status, created_at);
