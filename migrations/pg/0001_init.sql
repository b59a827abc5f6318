-- SPDX-License-Identifier: MIT
-- 0001 (PostgreSQL): users, API keys, pre-auth keys, nodes, policy versions.
-- The same schema as migrations/0001_init.sql in PostgreSQL's types: every
-- integer is BIGINT, blobs are BYTEA. Never edit a released migration.

CREATE TABLE users (
	id BIGSERIAL PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
	id BIGSERIAL PRIMARY KEY,
	prefix TEXT NOT NULL UNIQUE,
	hash BYTEA NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT,		-- NULL: never
	revoked_at BIGINT,
	last_used_at BIGINT
);

CREATE TABLE preauth_keys (
	id BIGSERIAL PRIMARY KEY,
	prefix TEXT NOT NULL UNIQUE,
	hash BYTEA NOT NULL,
	user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	reusable BIGINT NOT NULL DEFAULT 0,
	ephemeral BIGINT NOT NULL DEFAULT 0,
	tags TEXT NOT NULL DEFAULT '[]',
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	used_count BIGINT NOT NULL DEFAULT 0,
	revoked_at BIGINT
);

CREATE TABLE nodes (
	id BIGSERIAL PRIMARY KEY,
	machine_key BYTEA NOT NULL UNIQUE CHECK (octet_length(machine_key) = 32),
	node_key BYTEA NOT NULL UNIQUE CHECK (octet_length(node_key) = 32),
	disco_key BYTEA NOT NULL CHECK (octet_length(disco_key) = 32),
	hostname TEXT NOT NULL,
	name TEXT NOT NULL UNIQUE,
	user_id BIGINT NOT NULL REFERENCES users(id),
	tags TEXT NOT NULL DEFAULT '[]',
	ipv4 TEXT UNIQUE,
	ipv6 TEXT UNIQUE,
	ephemeral BIGINT NOT NULL DEFAULT 0,
	preauth_key_id BIGINT REFERENCES preauth_keys(id) ON DELETE SET NULL,
	created_at BIGINT NOT NULL,
	last_seen BIGINT,
	expires_at BIGINT,
	endpoints TEXT NOT NULL DEFAULT '[]',
	home_derp BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX nodes_user ON nodes(user_id);

CREATE TABLE policies (
	id BIGSERIAL PRIMARY KEY,
	text TEXT NOT NULL,
	etag TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL
);
