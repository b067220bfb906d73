"""Meshes, sharding rules, multi-host start-up and the pmap step."""
