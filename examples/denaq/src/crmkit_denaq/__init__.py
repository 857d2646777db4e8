"""denaq: a CRM for a company that signs up dealers, assembled from crmkit.

Load it as a plugin (``crmkit init DIR --plugin denaq``).  What it adds to the core: the
dealer pipeline (:mod:`crmkit_denaq.pipeline`), the lead creator role and the access of
each role (:mod:`crmkit_denaq.plugin`), lead distribution (:mod:`crmkit_denaq.distribution`),
statistics (:mod:`crmkit_denaq.stats`), mail templates and the demo generator.
"""
