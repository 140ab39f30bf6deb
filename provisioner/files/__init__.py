"""Job files: JSONL, JSON arrays and YAML with shared defaults, read as streams into located specs."""
