-- Tenants own Variables, Connections and Pools (issue 15, part 4): the same key may exist in
-- several tenants, each its own row. What was recorded before tenants existed belongs to the
-- default tenant, as its events say.

ALTER TABLE variable ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE variable DROP CONSTRAINT variable_pkey;
ALTER TABLE variable ADD PRIMARY KEY (tenant, key);

ALTER TABLE connection ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE connection DROP CONSTRAINT connection_pkey;
ALTER TABLE connection ADD PRIMARY KEY (tenant, conn_id);

ALTER TABLE slot_pool ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE slot_pool DROP CONSTRAINT slot_pool_pkey;
ALTER TABLE slot_pool ADD PRIMARY KEY (tenant, pool);
