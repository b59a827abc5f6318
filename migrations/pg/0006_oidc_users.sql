-- SPDX-License-Identifier: MIT
-- 0006 (PostgreSQL): users who log in with OpenID Connect; see
-- migrations/0006_oidc_users.sql.
ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN oidc_issuer TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc ON users(oidc_issuer, oidc_subject)
	WHERE oidc_issuer IS NOT NULL;
