"""crmsync.domain: CRM-neutral rules (person to contact, notes, status); no I/O."""
