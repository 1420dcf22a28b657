-- Envelope encryption of secrets: each Variable and Connection has its own data key, wrapped by
-- the master key (kept outside the database). A secret's delete event deletes its data key in the
-- same transaction, so its values in old events can no longer be read (crypto-shredding). Not a
-- read model: replays never write it.
CREATE TABLE secret_data_key (
    key_id      uuid        PRIMARY KEY,
    -- The secret's stream (`variable:<key>`, `connection:<conn_id>`): one key per secret.
    owner       text        NOT NULL UNIQUE,
    -- The data key encrypted with the master key: base64 of nonce, ciphertext and tag.
    wrapped     text        NOT NULL,
    -- Which master key wrapped it (first 8 bytes of its SHA-256, hex).
    master_id   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The read models hold sealed values (JSON, tagged by form). Rows written before hold what the
-- v1 events held, named as their upcasters name it: values and extras in clear, passwords
-- encrypted with the master key itself.
ALTER TABLE variable ALTER COLUMN val TYPE jsonb
    USING jsonb_build_object('form', 'clear', 'text', val);
ALTER TABLE connection ALTER COLUMN password TYPE jsonb
    USING CASE WHEN password IS NULL THEN NULL
               ELSE jsonb_build_object('form', 'master_key', 'ciphertext', password) END;
ALTER TABLE connection ALTER COLUMN extra TYPE jsonb
    USING CASE WHEN extra IS NULL THEN NULL
               ELSE jsonb_build_object('form', 'clear', 'text', extra) END;
