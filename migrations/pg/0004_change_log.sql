-- SPDX-License-Identifier: MIT
-- 0004 (PostgreSQL, the same statements as SQLite): durable map versions and the change log (docs/protocol.md,
-- "Versions and resume"). Plain tables and integer columns only, so that
-- the same statements run on PostgreSQL.
--
-- map_version holds the one counter every map version comes from: a change
-- takes counter + 1 in the same transaction as the change itself.
-- `pruned_through` is the highest version that may be missing from
-- `changes` (retention): a client resuming from a version below it gets a
-- full map. Both start at 0; the server sets them on first open to
-- (Unix seconds) * 2^20, above any version a server before 0004 handed out.
CREATE TABLE map_version (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	version BIGINT NOT NULL,
	pruned_through BIGINT NOT NULL
);
INSERT INTO map_version (id, version, pruned_through) VALUES (1, 0, 0);

-- One row per committed change, in version order. kind: 1 node changed
-- (node_id), 2 node removed (node_id; payload: who could see it), 3 online
-- flags (payload: {"on":[ids],"off":[ids]}), 4 policy (payload: {"all":true}
-- or {"full":[ids],"filter":[ids]}), 5 routes re-evaluated (payload: router
-- ids). created_at is Unix seconds, for retention by age.
CREATE TABLE changes (
	version BIGINT PRIMARY KEY,
	created_at BIGINT NOT NULL,
	kind INTEGER NOT NULL,
	node_id BIGINT NOT NULL DEFAULT 0,
	payload TEXT NOT NULL DEFAULT ''
);

-- The online flag peers were last told (published by the coalescing tick),
-- so that a restarted server starts from what its clients know.
ALTER TABLE nodes ADD COLUMN online INTEGER NOT NULL DEFAULT 0;
