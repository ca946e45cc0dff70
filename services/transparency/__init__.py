"""The public transparency report (aggregates with small-cell suppression) and the dashboard's overview queries."""
