"""The core's screens, one module per concept; registered by :mod:`crmkit.builtins.web`."""
