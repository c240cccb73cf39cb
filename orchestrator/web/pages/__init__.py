"""The routes of the web interface, one module per page (each exposes ``ROUTES``)."""
