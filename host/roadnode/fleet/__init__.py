"""The fleet side of the uplink: the MQTT broker the nodes talk to (tests, demo) and, later, the
collector that stores what they send."""
