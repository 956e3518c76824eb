"""The HTTP API: the app factory, dependencies, errors, middleware and routes. Modules here only
translate between HTTP and the domain modules of service/; nothing else in service/ imports a web
framework (the console aside)."""
