-- Transactional outbox: outgoing messages written in the same transaction as the state that
-- produced them, relayed to Kafka in id order by one relay per service at a time.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    service text NOT NULL,
    topic text NOT NULL,
    key bytea,
    value bytea,
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_service_id ON outbox (service, id);
