-- SPDX-License-Identifier: MIT
-- Sessions of the admin console (server/session.c, docs/admin-console.md).
-- The browser holds a random token in an HttpOnly cookie; only its SHA-256
-- is stored. kind 'session' is a signed-in console; 'onetime' is a sign-in
-- link (`wiremesh-server admin signin-link`) that is exchanged once for a
-- session and deleted in the same transaction.
CREATE TABLE admin_sessions (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
	kind TEXT NOT NULL CHECK (kind IN ('session', 'onetime')),
	subject TEXT NOT NULL,
	apikey_prefix TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions(expires_at);
