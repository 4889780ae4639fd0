"""One module per resource of SPEC §6."""
