"""The one path for events: the event model, the durable outbox, and the drainer.

A captured event is made durable in the outbox (`outbox`) by whoever captured it —
agent hooks, git hooks, `flowloom record`, the gateway — and a drainer (`drain`) hands
it to one sink (`flowloom.sinks`). Standard library only, so hooks stay light.
"""
