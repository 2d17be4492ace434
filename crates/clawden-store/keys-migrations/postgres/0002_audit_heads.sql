-- The head (last sequence number and MAC) of every audit chain, kept apart from the audit
-- table so that cutting the tail of a chain, or rewriting it wholesale, is detected.
CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    mac    BYTEA NOT NULL
);
