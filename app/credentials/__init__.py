"""A person's git credentials: personal access tokens per git host and one SSH key pair
Berth makes for them. They are kept encrypted (app.credentials.vault) and used at the
moment of need: by the worker for a clone, and inside the person's own workspaces
through a git credential helper and an SSH agent that ask Berth each time
(app.credentials.serve). No secret is written into a workspace."""
