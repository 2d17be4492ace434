-- Tool policies (sealed under the instance's key: they hold egress domains and commands
-- approved for good) and approvals of elevated tool calls (arguments sealed the same way).

CREATE TABLE tool_policies (
    instance_id  TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    body         BYTEA NOT NULL,
    version      BIGINT NOT NULL DEFAULT 1,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tool             TEXT NOT NULL,
    arguments        BYTEA NOT NULL,
    digest           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'allowed', 'denied', 'expired')),
    always           BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    decided_at       BIGINT,
    decided_by       TEXT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX approvals_pending ON approvals (instance_id, status, created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON tool_policies, approvals TO clawden_app;
ALTER TABLE tool_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON tool_policies USING (clawden_system() OR instance_id IN (SELECT clawden_my_instances()));
ALTER TABLE approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON approvals USING (clawden_system() OR instance_id IN (SELECT clawden_my_instances()));
