"""The server-rendered web interface: blueprints, templates and static files."""
