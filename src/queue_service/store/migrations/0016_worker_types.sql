-- Workers advertise the job types they serve, not only their queues: a
-- worker claims only the types its own registry holds, so a process started
-- without a plug-in leaves that plug-in's jobs waiting in a queue it does
-- serve. The leader compares waiting jobs with what live workers list and
-- warns (docs/job-types.md). Workers of an older version write the default,
-- an empty list, until they are replaced.
ALTER TABLE workers ADD COLUMN types text[] NOT NULL DEFAULT '{}';
