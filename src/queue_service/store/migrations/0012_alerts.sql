-- Reserved for alert history (issue 8).
SELECT 1;
