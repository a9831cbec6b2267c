"""HTTP routers, one per resource; thin: they parse, authorise and call a service."""
