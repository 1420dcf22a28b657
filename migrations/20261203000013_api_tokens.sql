-- The API tokens issued for machines (CI, GitOps), kept by ApiTokenIssued and ApiTokenRevoked.
-- A token is `lf_<token_id>_<secret>`; only the SHA-256 digest of the secret is kept.
CREATE TABLE api_token (
    token_id     text        PRIMARY KEY,
    role         text        NOT NULL,
    tenant       text        NOT NULL,
    digest       text        NOT NULL,
    description  text,
    created_by   text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
