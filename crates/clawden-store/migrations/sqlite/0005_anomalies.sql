-- Automatic containment: accounts locked for a while by an anomaly rule, and the notices that
-- tell their owners what happened.
ALTER TABLE users ADD COLUMN locked_until INTEGER;

CREATE TABLE notices (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX notices_user ON notices (user_id, created_at);
