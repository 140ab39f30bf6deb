"""After the run: plan (what a run would do) and teardown (archive or delete what a run created)."""
