"""The running system: settings, API, database, queue, webhooks and the CLI."""
