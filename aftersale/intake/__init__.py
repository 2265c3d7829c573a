"""Intake: turning inbound files and requests into stored inbox events."""
