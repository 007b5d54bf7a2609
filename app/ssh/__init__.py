"""The SSH gateway: one paramiko server on the host that proxies into workspaces through
the Docker exec API, so images need no sshd. No Flask here."""
