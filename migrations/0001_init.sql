-- SPDX-License-Identifier: MIT
-- 0001: users, API keys, pre-auth keys, nodes, policy versions.
-- Never edit a migration after it has been released: add a new one.

CREATE TABLE users (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
	id INTEGER PRIMARY KEY,
	prefix TEXT NOT NULL UNIQUE,
	hash BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER,		-- NULL: never
	revoked_at INTEGER,
	last_used_at INTEGER
);

CREATE TABLE preauth_keys (
	id INTEGER PRIMARY KEY,
	prefix TEXT NOT NULL UNIQUE,
	hash BLOB NOT NULL,
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	reusable INTEGER NOT NULL DEFAULT 0,
	ephemeral INTEGER NOT NULL DEFAULT 0,
	tags TEXT NOT NULL DEFAULT '[]',	-- JSON array of "tag:x"
	created_at INTEGER NOT NULL,
	expires_at INTEGER,
	used_count INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER
);

CREATE TABLE nodes (
	id INTEGER PRIMARY KEY,
	machine_key BLOB NOT NULL UNIQUE CHECK (length(machine_key) = 32),
	node_key BLOB NOT NULL UNIQUE CHECK (length(node_key) = 32),
	disco_key BLOB NOT NULL CHECK (length(disco_key) = 32),
	hostname TEXT NOT NULL,
	name TEXT NOT NULL UNIQUE,
	user_id INTEGER NOT NULL REFERENCES users(id),
	tags TEXT NOT NULL DEFAULT '[]',
	ipv4 TEXT UNIQUE,
	ipv6 TEXT UNIQUE,
	ephemeral INTEGER NOT NULL DEFAULT 0,
	preauth_key_id INTEGER REFERENCES preauth_keys(id) ON DELETE SET NULL,
	created_at INTEGER NOT NULL,
	last_seen INTEGER,
	expires_at INTEGER,
	endpoints TEXT NOT NULL DEFAULT '[]',
	home_derp INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX nodes_user ON nodes(user_id);

CREATE TABLE policies (
	id INTEGER PRIMARY KEY,
	text TEXT NOT NULL,
	etag TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	created_by TEXT NOT NULL
);
