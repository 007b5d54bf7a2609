"""Berth's long-running processes, each started by a ``berth`` command: ``berth serve``'s
supervisor and the children it starts (the web server, the worker, the SSH gateway, the
egress gateway). Each sets up logging and signals and then runs its domain package's
code; the domain packages hold no entry points of their own."""
