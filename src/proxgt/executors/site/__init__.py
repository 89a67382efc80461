"""The site runtime: one process per organization of a cross-site pilot, with mutually authenticated TLS links to
its neighbours (``proxgt site``). Modules: :mod:`~proxgt.executors.site.pilot` (the pilot file), ``transport``
(links), ``communicator`` (gossip rounds), ``data`` (a site's own data), ``executor`` (the run)."""
