-- SPDX-License-Identifier: MIT
-- Which server set a node's published online flag (its replica name:
-- --server-url, or "derp:HOST:PORT"; see the replicas table of 0008), so
-- that with replicas on PostgreSQL only the replica holding the node's
-- stream clears it, and the leader clears the flags of replicas that are
-- gone (docs/ha.md). '' when off or unknown. A single SQLite server writes
-- it but never reads it.
ALTER TABLE nodes ADD COLUMN online_by TEXT NOT NULL DEFAULT '';
