"""The roles a person can have, apart from the models so settings can name them."""

ROLES = ("admin", "template-admin", "member", "auditor")
