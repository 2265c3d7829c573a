"""From an inbox event to a sent message, with the database: apply events (apply_events),
advance due enrollments (advance), send (send, call_marks, stopping), record what providers
say after a send (send_outcomes), tell the team (alerts).
:mod:`aftersale.orchestration.passes` runs one round of it all.
"""
