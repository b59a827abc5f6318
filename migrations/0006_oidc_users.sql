-- SPDX-License-Identifier: MIT
-- 0006: users who log in with OpenID Connect. A user is found again by the
-- identity provider's issuer and subject, never by name alone; the display
-- name and email are what the provider said at the last login.
ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN oidc_issuer TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc ON users(oidc_issuer, oidc_subject)
	WHERE oidc_issuer IS NOT NULL;
