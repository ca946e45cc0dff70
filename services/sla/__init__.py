"""SLA status as a projection of the event store, the sweep that escalates, and the dashboard queries."""
