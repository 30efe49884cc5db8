"""Where stage events go: MQTT (through a durable outbox), stdout, the night recorder."""
