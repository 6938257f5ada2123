"""The interleaving model: a hypothesis state machine that drives the real service (its
routes, paths, cache, store and breaker) on real PostgreSQL, with several simulated workers
in one process, and checks the verified path's guarantee after every step against the
primary. See docs/proof.md."""
