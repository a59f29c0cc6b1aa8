"""Benchmark (b): what a user would hand-write with redis-py: parse each JSON notification, three
if-statements, count. Exits after COUNT messages and prints how many it handled.

Usage: subscriber.py URL CHANNEL COUNT
"""
import json
import sys

import redis

url, channel, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = redis.Redis.from_url(url)
pubsub = client.pubsub(ignore_subscribe_messages=True)
pubsub.subscribe(channel)
print("ready", flush=True)
seen = shown = 0
for message in pubsub.listen():
    note = json.loads(message["data"])
    seen += 1
    if note.get("priority") == "low":
        pass
    elif note.get("type") != "Simple":
        shown += 1
    elif "full" in note.get("title", ""):
        shown += 1
    if seen == count:
        break
print(seen, flush=True)
