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

-- The instances where the acting user is an owner or admin (who change the policy and see and
-- decide approvals). SECURITY DEFINER, like clawden_my_instances().
CREATE FUNCTION clawden_my_admin_instances() RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS
$$ SELECT instance_id FROM members WHERE user_id = clawden_uid() AND role IN ('owner', 'admin') $$;
GRANT EXECUTE ON FUNCTION clawden_my_admin_instances() TO clawden_app;

-- Policies: every member reads; owners and admins (or the server) write.
ALTER TABLE tool_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY member_reads ON tool_policies FOR SELECT
    USING (clawden_system() OR instance_id IN (SELECT clawden_my_instances()));
CREATE POLICY configurer_writes ON tool_policies FOR ALL
    USING (clawden_system() OR instance_id IN (SELECT clawden_my_admin_instances()))
    WITH CHECK (clawden_system() OR instance_id IN (SELECT clawden_my_admin_instances()));

-- Approvals: created and expired by the server; seen and decided by owners and admins.
ALTER TABLE approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON approvals FOR ALL USING (clawden_system()) WITH CHECK (clawden_system());
CREATE POLICY decider_reads ON approvals FOR SELECT
    USING (instance_id IN (SELECT clawden_my_admin_instances()));
CREATE POLICY decider_decides ON approvals FOR UPDATE
    USING (instance_id IN (SELECT clawden_my_admin_instances()))
    WITH CHECK (instance_id IN (SELECT clawden_my_admin_instances()));
