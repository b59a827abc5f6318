-- SPDX-License-Identifier: MIT
-- 0003 (PostgreSQL): node ids are never reused. A BIGSERIAL sequence never
-- hands out a value twice, so PostgreSQL needs no change here; the version
-- is recorded so both backends share one numbering.
SELECT 1;
