"""Job processors: the registry, its loading, and the built-in job types."""
