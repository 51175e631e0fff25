"""The vendor endpoints under ``/api/v2``: plain synchronous functions over the store."""

from .base import Call
from .customers import CustomerHandlers
from .misc import MiscHandlers
from .subscriptions import SubscriptionHandlers


class Api(CustomerHandlers, SubscriptionHandlers, MiscHandlers):
    """All handlers; the emulator routes to its bound methods."""


__all__ = ["Api", "Call"]
