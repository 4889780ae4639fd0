-- The plug-in's own table: one row per greeting, written with its job's completion.
CREATE TABLE plugin_greetings (
    job_id uuid PRIMARY KEY,
    text   text NOT NULL
);
