-- Agent workspace files (sealed under the instance's key), conversations and messages
-- (sealed under their author's key), and per-user daily usage counters.

CREATE TABLE agent_files (
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    path         TEXT NOT NULL,
    content      BYTEA NOT NULL,
    chars        BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (instance_id, path)
);

CREATE TABLE conversations (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    title        BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX conversations_user ON conversations (user_id, updated_at);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content          BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);

CREATE TABLE usage_daily (
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day            TEXT NOT NULL,
    messages       BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    tool_calls     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);
