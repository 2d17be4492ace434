-- Where each audit chain starts after retention removed its oldest records: the last removed
-- record's sequence number and MAC, kept apart from the audit table like the heads.
CREATE TABLE audit_checkpoints (
    chain  TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    mac    BLOB NOT NULL
);
