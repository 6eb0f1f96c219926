"""The job daemon: store, in-memory state, scheduler loop and API."""
