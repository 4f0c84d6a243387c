-- SAML single sign-on: requests in flight, assertion ids seen (replay protection) and
-- the IdP session behind each FlowLoom session (single logout).
CREATE TABLE directory_saml_requests (
    state_hash TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('login', 'reauth', 'logout')),
    redirect TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE directory_saml_assertions (
    assertion_hash TEXT PRIMARY KEY,
    idp TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX directory_saml_assertions_expiry ON directory_saml_assertions (expires_at);

CREATE TABLE directory_saml_sessions (
    session_id TEXT PRIMARY KEY REFERENCES directory_sessions (id) ON DELETE CASCADE,
    idp TEXT NOT NULL,
    name_id TEXT NOT NULL,
    name_id_format TEXT,
    name_qualifier TEXT,
    sp_name_qualifier TEXT,
    session_index TEXT
);
CREATE INDEX directory_saml_sessions_subject ON directory_saml_sessions (idp, name_id);
