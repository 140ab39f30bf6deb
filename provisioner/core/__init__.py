"""One spec to one record: the pipeline, its attempts and pure decisions, lookups by name, drift, the file runner, the public Provisioner."""
