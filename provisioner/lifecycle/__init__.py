"""Around the run: doctor (what the target speaks), plan (what a run would do) and teardown (archive or delete what a run created)."""
