-- The event log: the one source of truth. Everything else is a projection of it.
--
-- Appends take pg_advisory_xact_lock(LOG_LOCK) before reading the head, so positions are
-- assigned in commit order and gap-free: a reader that sees position N sees everything below N.

CREATE TABLE events (
    position        bigint      PRIMARY KEY,
    stream          text        NOT NULL,
    stream_version  bigint      NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL,
    CONSTRAINT events_stream_version_unique UNIQUE (stream, stream_version),
    CONSTRAINT events_position_positive CHECK (position > 0),
    CONSTRAINT events_stream_version_positive CHECK (stream_version > 0)
);

CREATE INDEX events_type_position ON events (type, position);

-- Current version of every stream, read under the log lock for optimistic concurrency.
CREATE TABLE event_streams (
    stream  text   PRIMARY KEY,
    version bigint NOT NULL
);

-- The head of the log (single row). Kept apart from max(position) so retention can detach
-- old partitions later without moving the head.
CREATE TABLE event_log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO event_log_head (position) VALUES (0);

-- Large payloads (DAG sources and documents, XCom values) live here, content-addressed by
-- SHA-256, and events reference them by hash. Blobs are written before the event that names
-- them and are never rewritten; like the log they are not a read model.
CREATE TABLE blobs (
    hash        text        PRIMARY KEY,
    media_type  text        NOT NULL,
    content     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
