-- SCIM 2.0 provisioning (flowloom.auth.scim). Timestamps here are UTC text
-- 'YYYY-MM-DDTHH:MM:SS.ffffffZ' in both dialects.
-- Bearer tokens an identity provider provisions with: stored as SHA-256 only.
CREATE TABLE directory_scim_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);

-- The users an identity provider manages: its userName (unique, case-insensitive),
-- externalId and the SCIM attributes it sent (JSON), beside the directory_users row.
CREATE TABLE directory_scim_users (
    user_id TEXT PRIMARY KEY REFERENCES directory_users (id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL UNIQUE,
    external_id TEXT,
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The teams an identity provider manages as SCIM Groups.
CREATE TABLE directory_scim_groups (
    team_id TEXT PRIMARY KEY REFERENCES directory_teams (id) ON DELETE CASCADE,
    external_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
