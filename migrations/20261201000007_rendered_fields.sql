-- The rendered template fields of each task instance's current try (a blob of JSON), as the
-- UI's "Rendered Templates" tab shows them.
ALTER TABLE task_instance ADD COLUMN rendered_fields_hash text;
