-- Custom roles on Leoflow API tokens (issue 15): `leoflow tokens create --dag-role NAME`, as
-- ApiTokenIssued.dag_roles records them. The token reaches the DAGs whose access_control names
-- one of them, as a sign-in mapped to that role does. Tokens issued before have none.
ALTER TABLE api_token ADD COLUMN dag_roles text[] NOT NULL DEFAULT '{}';
