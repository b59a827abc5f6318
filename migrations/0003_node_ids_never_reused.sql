-- Node ids are never reused: a deleted node's id must not name a new node
-- (an admin repeating `nodes delete N` must not delete someone else). The
-- table is rebuilt with AUTOINCREMENT; nothing references nodes(id).
CREATE TABLE nodes_new (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
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
	home_derp INTEGER NOT NULL DEFAULT 0,
	routes_advertised TEXT NOT NULL DEFAULT '[]',
	routes_approved TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO nodes_new (id, machine_key, node_key, disco_key, hostname, name, user_id, tags,
	ipv4, ipv6, ephemeral, preauth_key_id, created_at, last_seen, expires_at, endpoints,
	home_derp, routes_advertised, routes_approved)
SELECT id, machine_key, node_key, disco_key, hostname, name, user_id, tags,
	ipv4, ipv6, ephemeral, preauth_key_id, created_at, last_seen, expires_at, endpoints,
	home_derp, routes_advertised, routes_approved FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_new RENAME TO nodes;
CREATE INDEX nodes_user ON nodes(user_id);
