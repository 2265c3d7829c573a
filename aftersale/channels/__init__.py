"""Channels: one interface, one module per provider."""

from aftersale.channels.base import Channel, OutboundMessage, SendResult

__all__ = ["Channel", "OutboundMessage", "SendResult"]
