"""Hosting resources on the panel side: tenants (and, next, their sites and databases). Each is
an owned resource (authz/resources.py) whose host side is done by the system agent."""
