-- The directory: users, projects, teams, grants, API keys, sessions, login failures.
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (sorts like time).
CREATE TABLE directory_projects (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

CREATE TABLE directory_users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'service')),
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    oidc_issuer TEXT,
    oidc_subject TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (oidc_issuer, oidc_subject)
);

CREATE TABLE directory_teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE directory_team_members (
    team_id TEXT NOT NULL REFERENCES directory_teams (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE directory_grants (
    user_id TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, project, role)
);
CREATE INDEX directory_grants_project ON directory_grants (project);

CREATE TABLE directory_team_grants (
    team_id TEXT NOT NULL REFERENCES directory_teams (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (team_id, project, role)
);
CREATE INDEX directory_team_grants_project ON directory_team_grants (project);

CREATE TABLE directory_api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    scopes TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT,
    rotated_from TEXT REFERENCES directory_api_keys (id)
);
CREATE INDEX directory_api_keys_user ON directory_api_keys (user_id);

CREATE TABLE directory_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    via TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    auth_time TEXT NOT NULL,
    reauthenticated_at TEXT,
    signed_before INTEGER NOT NULL DEFAULT 0,
    ended_at TEXT
);
CREATE INDEX directory_sessions_user ON directory_sessions (user_id);

CREATE TABLE directory_login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT,
    client TEXT,
    at TEXT NOT NULL
);
CREATE INDEX directory_login_failures_account ON directory_login_failures (account, at);
CREATE INDEX directory_login_failures_client ON directory_login_failures (client, at);

CREATE TABLE directory_oidc_states (
    state_hash TEXT PRIMARY KEY,
    verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    redirect TEXT NOT NULL,
    created_at TEXT NOT NULL
);
