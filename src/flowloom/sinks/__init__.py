"""Where drained events are recorded: the local ledger, or the team server.

Each sink implements `flowloom.events.drain.Sink`; `flowloom.drainer` picks one from the
settings.
"""
