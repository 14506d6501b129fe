"""Backend drivers: storage primitives with the atomicity the services need."""
