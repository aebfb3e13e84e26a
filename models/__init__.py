"""What is stored and how: plain functions over MySQL and Redis, knowing nothing of Flask (but db.py,
replicas.py and redis_client.py, which hand out the request's connections and the Redis client).

The first argument says what a function needs: a cursor (`cur`) for SQL that runs in the
caller's transaction or read, so the caller decides what is atomic; a connection (`conn`)
only where the function runs transactions of its own (outbox.relay, unit_of_work); the
Redis client (`r`) for Redis, or the Queues object (queue.py) for what goes on the queues.
Every Redis key name comes from keys.py.
"""
