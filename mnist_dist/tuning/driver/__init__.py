"""The sweep's driver: the command line, the resolved sweep, the run that puts it together, its estimate and console."""
