-- Reserved for the email and SMS sent-ledgers (issue 7 §4).
SELECT 1;
