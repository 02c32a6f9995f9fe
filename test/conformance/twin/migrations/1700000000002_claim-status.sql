-- Up Migration
ALTER TABLE claims_claim ADD COLUMN status varchar(16) NOT NULL DEFAULT 'open';

-- Down Migration
ALTER TABLE claims_claim DROP COLUMN status;
