"""The HTTP API: app factory, dependencies, schemas, routes and authentication."""
