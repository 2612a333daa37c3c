"""The event-driven pipeline: the stage table, the service runtime every stage runs, the bus
topology, prompt templates, reconciliation, and the NATS users and Postgres grants derived from
the stage table.
"""
