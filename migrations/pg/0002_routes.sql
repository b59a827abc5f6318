-- SPDX-License-Identifier: MIT
-- 0002 (PostgreSQL): subnet and exit routes advertised and approved, JSON
-- arrays of canonical CIDR text (see migrations/0002_routes.sql).
ALTER TABLE nodes ADD COLUMN routes_advertised TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN routes_approved TEXT NOT NULL DEFAULT '[]';
