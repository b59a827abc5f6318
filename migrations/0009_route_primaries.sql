-- SPDX-License-Identifier: MIT
-- The primary router of each subnet prefix, as elected (server/mapper.c,
-- docs/ha.md "Singleton work"). On PostgreSQL the leader replica writes it
-- in the transaction of the ROUTES changes that announce it, and every
-- replica reads it from here, so all of them name the same primary. A
-- single SQLite server elects in memory as before; the table stays empty.
CREATE TABLE route_primaries (
	prefix TEXT PRIMARY KEY,
	node_id INTEGER NOT NULL
);
