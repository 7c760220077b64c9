"""Host collector, component telemetry library and log shipper."""
