"""The site runtime: one process per organization of a cross-site pilot, CURVE-encrypted links to its neighbours
(``proxgt site``). Modules: :mod:`~proxgt.executors.site.pilot` (the pilot file), ``transport`` (sockets),
``communicator`` (gossip rounds), ``data`` (a site's own data), ``executor`` (the run)."""
