"""The dashboard's routes, one module per concept; each exposes `register(app, ...)`."""
