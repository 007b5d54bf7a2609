"""Workspaces: templates, requests for changes (web side), and carrying them out (worker)."""
