"""Authorization: RBAC with ownership and sharing, decided by one function (`Policy.decide`)."""

from wcp360.authz.policy import Decision, Policy, Resource, covers
from wcp360.authz.principal import Principal

__all__ = ["Decision", "Policy", "Principal", "Resource", "covers"]
