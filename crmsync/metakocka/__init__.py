"""The Metakocka ERP: its client, errors and typed partners."""
