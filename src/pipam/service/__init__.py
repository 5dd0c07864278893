"""The service layer: validation, one transaction per operation, addresses through the backend."""
