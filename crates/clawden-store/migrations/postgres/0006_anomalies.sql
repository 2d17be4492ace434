-- Automatic containment: accounts locked for a while by an anomaly rule, and the notices that
-- tell their owners what happened.
ALTER TABLE users ADD COLUMN locked_until BIGINT;

CREATE TABLE notices (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX notices_user ON notices (user_id, created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON notices TO clawden_app;
ALTER TABLE notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE notices FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON notices USING (clawden_system() OR user_id = clawden_uid());
