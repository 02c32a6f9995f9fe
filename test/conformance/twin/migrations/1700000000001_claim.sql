-- Up Migration
CREATE TABLE claims_claim (
  id bigserial PRIMARY KEY,
  code varchar(32) NOT NULL UNIQUE,
  title varchar(200) NOT NULL DEFAULT ''
);

-- Down Migration
DROP TABLE claims_claim;
