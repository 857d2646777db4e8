"""crmkit-carservice: a service-station CRM assembled from crmkit, its finance plugin and the
booking journal (entry point ``crmkit: carservice``)."""

from crmkit_carservice.services import carservice

__all__ = ["carservice"]
