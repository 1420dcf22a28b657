-- The tenant a failing project was registered into: its import errors are that tenant's.
ALTER TABLE import_error ADD COLUMN tenant text NOT NULL DEFAULT 'default';
