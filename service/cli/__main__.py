"""`python -m service.cli`, as docker-compose.yml and the tests run the command."""

from service.cli import app

app()
