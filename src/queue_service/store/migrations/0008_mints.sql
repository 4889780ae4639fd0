-- Reserved for the mint ledger (issue 7 §4).
SELECT 1;
