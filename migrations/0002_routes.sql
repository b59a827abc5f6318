-- Subnet routes and exit routes (0.0.0.0/0, ::/0) a node advertises, and
-- those an admin (or the policy's autoApprovers) approved. JSON arrays of
-- canonical CIDR text; a route serves when it is both advertised and approved.
ALTER TABLE nodes ADD COLUMN routes_advertised TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN routes_approved TEXT NOT NULL DEFAULT '[]';
