-- Reserved for webhook endpoints (issue 7 §2).
SELECT 1;
