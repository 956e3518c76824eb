"""The docs tests' fixtures: the service tests' model, databases and callback receiver."""

from tests.service.conftest import (  # noqa: F401  (fixtures, used by name)
    database_url,
    models_dir,
    receiver,
    redis_server_url,
    redis_url,
)
