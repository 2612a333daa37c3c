"""The event-driven pipeline: the stage table, the service runtime every stage runs (`stage`:
what a handler sees; `delivery`: how each message is pulled and settled; `service`: the app),
the bus topology, prompt templates, reconciliation, and the NATS users and Postgres grants
derived from the stage table.
"""
