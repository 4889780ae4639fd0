-- A second file of the same namespace: applied after the first, in order.
ALTER TABLE plugin_greetings ADD COLUMN said_at timestamptz NOT NULL DEFAULT now();
