"""Caching: action keys, file digests, the local action store and remote caches."""
