"""How fast and how hard: rate limiters (fixed, shared, adaptive), the retry decision and budget, stopping."""
