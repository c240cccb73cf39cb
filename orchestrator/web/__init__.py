"""The web interface (``orch web``): projects, runs as a live flowchart, forms, data viewers.

Every page calls the application layer (:mod:`orchestrator.app`), never the scheduler or the
store directly. The server binds to 127.0.0.1 by default behind a login (a token printed at
start); state-changing requests carry a CSRF token; files are served only from the project.
Scripts, styles and fonts ship with the package (``static/``): no page fetches from the internet.
"""
