"""The bridge: drains this service's Redis queues into a stock GoBelieve router (SPEC 7)."""
