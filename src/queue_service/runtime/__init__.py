"""The worker loop, the executor, leader duties and the service wiring."""
