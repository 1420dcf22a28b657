-- Tenants (issue 15, part 4): the tenant that owns a DAG, as its DagParsed records it. DAGs
-- parsed before tenants existed belong to the default tenant, as their events say. A DAG's
-- lookups stay on its primary key; lists scoped to one tenant go through (tenant, dag_id).

ALTER TABLE dag ADD COLUMN tenant text NOT NULL DEFAULT 'default';

CREATE INDEX dag_tenant_dag_id ON dag (tenant, dag_id);
