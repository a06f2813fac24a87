"""Results: the schema, the store, untrusted results folders, sample files, provenance and the seed aggregate."""
