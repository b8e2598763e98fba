"""The trial side: what runs inside Ray's processes for one trial (a reused trial process, or a Ray Train DDP run)."""
