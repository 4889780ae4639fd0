"""`python -m queue_service.cli`."""

from queue_service.cli import main

main()
