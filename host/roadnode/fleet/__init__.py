"""The fleet side of the uplink (docs/fleet.md): the MQTT broker the nodes talk to (`broker`), the
collector that stores what they send exactly once (`messages` -> `store` <- `service`), and the
questions asked of the store: how is every device (`fleet`), how is every road (`roads`)."""
