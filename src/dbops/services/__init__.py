"""Use cases. Plain Python: take ports, return pydantic models, raise DbopsError."""
