"""Business logic of the cloud API, independent of HTTP: routers call these functions."""
