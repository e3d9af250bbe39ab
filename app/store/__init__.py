"""Honk's durable store: webhook deliveries, the runs queue with leases, small kv facts."""

from app.store.store import Delivery, NewRun, Store, StoreError

__all__ = ["Delivery", "NewRun", "Store", "StoreError"]
