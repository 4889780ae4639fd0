-- Reserved for cron schedules (issue 8).
SELECT 1;
