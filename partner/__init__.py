"""The partner-facing side: the network partner's API (usage batches in, signed), usage ingestion,
the delivery of the network outbox and the API's OpenAPI contract. It sits above renewals (a usage
batch can open renewals) and below the operator console (docs/architecture.md)."""
