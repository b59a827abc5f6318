-- SPDX-License-Identifier: MIT
-- 0007 (PostgreSQL): sessions of the admin console; the same table as
-- migrations/0007_admin_sessions.sql in PostgreSQL's types.
CREATE TABLE admin_sessions (
	id BIGSERIAL PRIMARY KEY,
	token_hash BYTEA NOT NULL UNIQUE CHECK (length(token_hash) = 32),
	kind TEXT NOT NULL CHECK (kind IN ('session', 'onetime')),
	subject TEXT NOT NULL,
	apikey_prefix TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	last_used_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions(expires_at);
