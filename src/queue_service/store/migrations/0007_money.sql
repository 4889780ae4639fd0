-- Reserved for the payment and refund ledgers (issue 7 §4).
SELECT 1;
