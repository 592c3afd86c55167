"""The throughput benchmark (`make bench`): agentops against the physical floor."""
