"""The partner side's writes: usage ingestion (usage.py) and outbox delivery (outbox.py)."""
