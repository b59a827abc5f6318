-- SPDX-License-Identifier: MIT
-- 0008 (PostgreSQL): the replicas of one network (docs/ha.md, "The replica list"). Each
-- wiremesh-server keeps its own row up to date every few seconds: its
-- public URL (--server-url) and the DERP region of its embedded relay, if
-- any (one entry of a DERP map's "Regions", as JSON). `name` is the URL, or
-- "derp:HOST:PORT" for a replica without one. Rows whose heartbeat_at is
-- older than the staleness limit are not published and are deleted.
CREATE TABLE replicas (
	name TEXT PRIMARY KEY,
	server_url TEXT NOT NULL DEFAULT '',
	derp_region_id INTEGER NOT NULL DEFAULT 0,
	derp_region TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL,
	heartbeat_at BIGINT NOT NULL
);

-- What was last published to the map streams (a REPLICAS change): the
-- list of live replicas as JSON. A replica publishes only when the live
-- list differs from it, by a conditional UPDATE of this one row, so of
-- several replicas seeing the same difference one publishes it.
CREATE TABLE replica_list (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	published TEXT NOT NULL
);
INSERT INTO replica_list (id, published) VALUES (1, '[]');
