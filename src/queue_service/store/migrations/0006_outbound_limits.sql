-- Reserved for the outbound rate limits and circuit breakers (issue 7 §5).
SELECT 1;
