-- Invitations to instances (answered by the invitee), and the platform admin log, which no
-- client route other than the platform admin's ever reads.

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'user')),
    invited_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    UNIQUE (instance_id, email)
);
CREATE INDEX invitations_email ON invitations (email);

CREATE TABLE admin_log (
    id             TEXT PRIMARY KEY,
    at             BIGINT NOT NULL,
    actor_user_id  TEXT,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    ip             TEXT
);
CREATE INDEX admin_log_at ON admin_log (at);
