-- SPDX-License-Identifier: MIT
-- 0010 (PostgreSQL): which replica set a node's published online flag
-- (see migrations/0010_online_by.sql).
ALTER TABLE nodes ADD COLUMN online_by TEXT NOT NULL DEFAULT '';
