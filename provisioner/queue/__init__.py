"""Queue mode on Redis Streams: the streams adapter, the shared pace, the Lua scripts, the message, the worker."""
