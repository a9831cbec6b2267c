"""Durable background jobs: queues in database tables (route and train jobs) and the workers that run them.

``queue`` claims, leases and recovers jobs; ``child`` runs a job's subprocess with a lifeline;
``supervise`` drives one running job (lease, cancellation, timeout, shutdown); ``route_runner`` and
``train_runner`` run one job of each kind; ``worker`` composes slots per queue and the upkeep loop.
"""
