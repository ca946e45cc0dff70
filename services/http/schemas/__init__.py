"""HTTP request and response schemas, one module per resource: the only place the API's shapes are defined."""
