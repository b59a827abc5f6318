-- SPDX-License-Identifier: MIT
-- 0011 (PostgreSQL): registrations waiting for a person, shared by the
-- replicas (see migrations/0011_registrations.sql).
CREATE TABLE registrations (
	id TEXT PRIMARY KEY,
	machine_key BYTEA NOT NULL CHECK (length(machine_key) = 32),
	node_key BYTEA NOT NULL CHECK (length(node_key) = 32),
	disco_key BYTEA NOT NULL CHECK (length(disco_key) = 32),
	hostname TEXT NOT NULL,
	routes TEXT,
	addr TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('pending', 'busy', 'done', 'failed')),
	ended_at BIGINT NOT NULL DEFAULT 0,
	node_id BIGINT NOT NULL DEFAULT 0,
	login TEXT NOT NULL DEFAULT '',
	error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX registrations_machine ON registrations(machine_key);
CREATE INDEX registrations_ended ON registrations(ended_at);
