"""What a run tells the outside: the meter protocol, Prometheus metrics, health endpoints, progress, logging."""
