-- Reserved for the per-minute metrics snapshots (issue 8).
SELECT 1;
