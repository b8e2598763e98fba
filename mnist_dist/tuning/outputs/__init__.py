"""What a sweep leaves behind: results files, the event log, the ensemble, final seeds, the dashboard over its study."""
