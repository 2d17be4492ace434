-- Row-level security: the same rules the store's queries follow, enforced by PostgreSQL too,
-- so a bug in a query still cannot show one tenant another's rows. The store sets
-- `clawden.user_id` (the acting user) and `clawden.system` ('on' for the server itself) on
-- every connection or transaction, and works as `clawden_app`, which never bypasses RLS.

DO $$
BEGIN
    CREATE ROLE clawden_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO clawden_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO clawden_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO clawden_app;

CREATE FUNCTION clawden_system() RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT coalesce(current_setting('clawden.system', true), '') = 'on' $$;

CREATE FUNCTION clawden_uid() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce(current_setting('clawden.user_id', true), '') $$;

-- The instances the acting user belongs to. SECURITY DEFINER so the members policy can use
-- it without consulting itself.
CREATE FUNCTION clawden_my_instances() RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS
$$ SELECT instance_id FROM members WHERE user_id = clawden_uid() $$;

CREATE FUNCTION clawden_my_email() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS
$$ SELECT email FROM users WHERE id = clawden_uid() $$;

GRANT EXECUTE ON FUNCTION clawden_system(), clawden_uid(), clawden_my_instances(), clawden_my_email() TO clawden_app;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON users USING (clawden_system() OR id = clawden_uid());

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON sessions USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON api_keys USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON credentials USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE totp FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON totp USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON recovery_codes USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_daily USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON conversations USING (clawden_system() OR user_id = clawden_uid());

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON messages USING (
    clawden_system() OR conversation_id IN (SELECT id FROM conversations WHERE user_id = clawden_uid()));

ALTER TABLE members ENABLE ROW LEVEL SECURITY;
ALTER TABLE members FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON members USING (
    clawden_system() OR user_id = clawden_uid() OR instance_id IN (SELECT clawden_my_instances()));

ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE instances FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON instances USING (clawden_system() OR id IN (SELECT clawden_my_instances()));

ALTER TABLE agent_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_files FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON agent_files USING (clawden_system() OR instance_id IN (SELECT clawden_my_instances()));

ALTER TABLE gateway_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON gateway_tokens USING (clawden_system() OR instance_id IN (SELECT clawden_my_instances()));

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY member_or_invitee ON invitations USING (
    clawden_system() OR instance_id IN (SELECT clawden_my_instances()) OR email = clawden_my_email());

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
-- The server records events for any caller (a refusal has no owner to check against);
-- reading is own actions or the instance's; nobody updates an audit row.
CREATE POLICY read_own_or_member ON audit_log FOR SELECT USING (
    clawden_system() OR actor_user_id = clawden_uid() OR instance_id IN (SELECT clawden_my_instances()));
CREATE POLICY append ON audit_log FOR INSERT WITH CHECK (true);
CREATE POLICY remove_with_instance ON audit_log FOR DELETE USING (
    clawden_system() OR instance_id IN (SELECT clawden_my_instances()));

ALTER TABLE admin_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin_log FORCE ROW LEVEL SECURITY;
CREATE POLICY system_only ON admin_log USING (clawden_system());

-- Only the server chains audit records (fills in their MAC).
CREATE POLICY chain_by_system ON audit_log FOR UPDATE USING (clawden_system());
