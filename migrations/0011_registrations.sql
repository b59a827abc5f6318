-- SPDX-License-Identifier: MIT
-- Registrations waiting for a person (server/enrol.c, docs/ha.md): written
-- by replicas on PostgreSQL so that any replica can list and approve one
-- that another began, and the replica holding the agent's long-poll learns
-- the outcome. state: 'pending' (waiting), 'busy' (a replica is writing the
-- node), 'done' (node_id and login say who), 'failed' (error says why).
-- A pending row past expires_at has expired. A single SQLite server keeps
-- its registrations in memory and leaves this table empty.
CREATE TABLE registrations (
	id TEXT PRIMARY KEY,
	machine_key BLOB NOT NULL CHECK (length(machine_key) = 32),
	node_key BLOB NOT NULL CHECK (length(node_key) = 32),
	disco_key BLOB NOT NULL CHECK (length(disco_key) = 32),
	hostname TEXT NOT NULL,
	routes TEXT,
	addr TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('pending', 'busy', 'done', 'failed')),
	ended_at INTEGER NOT NULL DEFAULT 0,
	node_id INTEGER NOT NULL DEFAULT 0,
	login TEXT NOT NULL DEFAULT '',
	error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX registrations_machine ON registrations(machine_key);
CREATE INDEX registrations_ended ON registrations(ended_at);
