"""Honk's durable store: webhook deliveries, the runs queue with leases, small kv facts."""

from app.store.database import StoreError
from app.store.events import EventTotals, RunEvent
from app.store.inbox import Delivery
from app.store.queue import NewRun
from app.store.store import Store

__all__ = ["Delivery", "EventTotals", "NewRun", "RunEvent", "Store", "StoreError"]
