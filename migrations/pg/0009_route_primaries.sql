-- SPDX-License-Identifier: MIT
-- 0009 (PostgreSQL): the primary router of each subnet prefix, written by
-- the leader replica with the ROUTES changes that announce it and read by
-- every replica (see migrations/0009_route_primaries.sql).
CREATE TABLE route_primaries (
	prefix TEXT PRIMARY KEY,
	node_id BIGINT NOT NULL
);
